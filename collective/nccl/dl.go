//go:build cgo

package nccl

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

// NCCL's entry points as nccl.h declares them, so that neither its header
// nor its library is needed to build. ncclComm_t and cudaStream_t are
// opaque pointers; ncclResult_t, ncclDataType_t and ncclRedOp_t are enums,
// passed as int.
typedef int ncclResult_t;
typedef void *ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId; // NCCL_UNIQUE_ID_BYTES

// ncclConfig_t as NCCL 2.14 laid it out, the first release with
// ncclCommInitRankConfig: size, magic, version, blocking. Later releases
// only append fields; NCCL copies min(size, its own sizeof) bytes over its
// NCCL_CONFIG_INITIALIZER and defaults every field newer than version, so
// this prefix, with version 2.14.0, is valid for every 2.x from 2.14 on.
typedef struct {
	size_t size;
	unsigned int magic;
	unsigned int version;
	int blocking;
} macdist_nccl_config;

static struct {
	ncclResult_t (*GetVersion)(int *);
	ncclResult_t (*GetUniqueId)(ncclUniqueId *);
	ncclResult_t (*CommInitRankConfig)(ncclComm_t *, int, ncclUniqueId, int, macdist_nccl_config *);
	ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
	ncclResult_t (*CommAbort)(ncclComm_t);
	ncclResult_t (*CommDestroy)(ncclComm_t);
	ncclResult_t (*AllReduce)(const void *, void *, size_t, int, int, ncclComm_t, void *);
	ncclResult_t (*Broadcast)(const void *, void *, size_t, int, int, ncclComm_t, void *);
	const char *(*GetErrorString)(ncclResult_t);
	const char *(*GetLastError)(ncclComm_t); // NCCL ≥ 2.13; optional
} nc;

// The CUDA driver's event calls, to wait for one collective without
// waiting for what was queued on the stream after it. CUresult is an int.
static struct {
	int (*EventCreate)(void **, unsigned int);
	int (*EventRecord)(void *, void *);
	int (*EventQuery)(void *);
	int (*EventDestroy)(void *);
	int (*GetErrorName)(int, const char **);
} ev;

static const char *missing;
static void *sym(void *h, const char *name, int required) {
	void *p = dlsym(h, name);
	if (p == NULL && required && missing == NULL) missing = name;
	return p;
}

static const char *macdist_bind_nccl(void *h) {
	missing = NULL;
	nc.GetVersion = sym(h, "ncclGetVersion", 1);
	nc.GetUniqueId = sym(h, "ncclGetUniqueId", 1);
	nc.CommInitRankConfig = sym(h, "ncclCommInitRankConfig", 1);
	nc.CommGetAsyncError = sym(h, "ncclCommGetAsyncError", 1);
	nc.CommAbort = sym(h, "ncclCommAbort", 1);
	nc.CommDestroy = sym(h, "ncclCommDestroy", 1);
	nc.AllReduce = sym(h, "ncclAllReduce", 1);
	nc.Broadcast = sym(h, "ncclBroadcast", 1);
	nc.GetErrorString = sym(h, "ncclGetErrorString", 1);
	nc.GetLastError = sym(h, "ncclGetLastError", 0);
	return missing;
}

// macdist_bind_events binds the event calls from h, the driver that
// kernels/cuda loaded. cuEventDestroy is the _v2 name cuda.h maps it to.
static const char *macdist_bind_events(void *h) {
	missing = NULL;
	ev.EventCreate = sym(h, "cuEventCreate", 1);
	ev.EventRecord = sym(h, "cuEventRecord", 1);
	ev.EventQuery = sym(h, "cuEventQuery", 1);
	ev.EventDestroy = sym(h, "cuEventDestroy_v2", 1);
	ev.GetErrorName = sym(h, "cuGetErrorName", 0);
	return missing;
}

static ncclResult_t macdist_nccl_version(int *v) { return nc.GetVersion(v); }
static ncclResult_t macdist_nccl_unique_id(void *out) { return nc.GetUniqueId((ncclUniqueId *)out); }

static ncclResult_t macdist_nccl_init(ncclComm_t *comm, int nranks, const void *id, int rank, int blocking) {
	macdist_nccl_config cfg;
	ncclUniqueId uid;
	memset(&cfg, 0, sizeof cfg);
	cfg.size = sizeof cfg;
	cfg.magic = 0xcafebeef;  // NCCL_API_MAGIC
	cfg.version = 21400;     // NCCL_VERSION(2, 14, 0)
	cfg.blocking = blocking;
	memcpy(&uid, id, sizeof uid);
	return nc.CommInitRankConfig(comm, nranks, uid, rank, &cfg);
}

static ncclResult_t macdist_nccl_async_error(ncclComm_t comm, ncclResult_t *state) {
	return nc.CommGetAsyncError(comm, state);
}
static ncclResult_t macdist_nccl_abort(ncclComm_t comm) { return nc.CommAbort(comm); }
static ncclResult_t macdist_nccl_destroy(ncclComm_t comm) { return nc.CommDestroy(comm); }

static ncclResult_t macdist_nccl_allreduce(unsigned long long buf, size_t n, int dtype, int op, ncclComm_t comm, void *stream) {
	return nc.AllReduce((const void *)buf, (void *)buf, n, dtype, op, comm, stream);
}
static ncclResult_t macdist_nccl_broadcast(unsigned long long buf, size_t n, int dtype, int root, ncclComm_t comm, void *stream) {
	return nc.Broadcast((const void *)buf, (void *)buf, n, dtype, root, comm, stream);
}
static const char *macdist_nccl_error_string(ncclResult_t r) {
	return nc.GetErrorString == NULL ? NULL : nc.GetErrorString(r);
}
static const char *macdist_nccl_last_error(ncclComm_t comm) {
	return nc.GetLastError == NULL ? NULL : nc.GetLastError(comm);
}

static int macdist_event_create(void **e) { return ev.EventCreate(e, 2); } // CU_EVENT_DISABLE_TIMING
static int macdist_event_record(void *e, void *s) { return ev.EventRecord(e, s); }
static int macdist_event_query(void *e) { return ev.EventQuery(e); }
static int macdist_event_destroy(void *e) { return ev.EventDestroy(e); }
static const char *macdist_cu_error_name(int r) {
	const char *s = NULL;
	if (ev.GetErrorName == NULL || ev.GetErrorName(r, &s) != 0) return NULL;
	return s;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/macdist/macdist/internal/dynlib"
)

func bindNCCL(h dynlib.Lib) error {
	if m := C.macdist_bind_nccl(unsafe.Pointer(h)); m != nil {
		return fmt.Errorf("missing symbol %s", C.GoString(m))
	}
	return nil
}

func bindEvents(h dynlib.Lib) error {
	if m := C.macdist_bind_events(unsafe.Pointer(h)); m != nil {
		return fmt.Errorf("missing symbol %s", C.GoString(m))
	}
	return nil
}

func ncclVersion() (int, error) {
	var v C.int
	err := check("ncclGetVersion", nil, result(C.macdist_nccl_version(&v)))
	return int(v), err
}

func ncclUniqueID() ([IDBytes]byte, error) {
	p := C.calloc(IDBytes, 1) // C memory: NCCL writes it from C
	defer C.free(p)
	var id [IDBytes]byte
	if err := check("ncclGetUniqueId", nil, result(C.macdist_nccl_unique_id(p))); err != nil {
		return id, err
	}
	copy(id[:], unsafe.Slice((*byte)(p), IDBytes))
	return id, nil
}

// commInit starts ncclCommInitRankConfig. With blocking false it may return
// the communicator with result ncclInProgress, to be polled.
func commInit(nranks int, id [IDBytes]byte, rank int, blocking bool) (comm, result) {
	p := C.malloc(IDBytes)
	defer C.free(p)
	copy(unsafe.Slice((*byte)(p), IDBytes), id[:])
	b := C.int(0)
	if blocking {
		b = 1
	}
	var c C.ncclComm_t
	r := C.macdist_nccl_init(&c, C.int(nranks), p, C.int(rank), b)
	return comm(c), result(r)
}

// asyncError is ncclCommGetAsyncError: the communicator's state
// (ncclInProgress while an operation is being set up, ncclSuccess, or the
// error that broke it), and the result of the query itself.
func asyncError(c comm) (state, r result) {
	var s C.ncclResult_t
	r = result(C.macdist_nccl_async_error(C.ncclComm_t(c), &s))
	return result(s), r
}

func commAbort(c comm) result   { return result(C.macdist_nccl_abort(C.ncclComm_t(c))) }
func commDestroy(c comm) result { return result(C.macdist_nccl_destroy(C.ncclComm_t(c))) }

func allReduce(buf uint64, n int, op int, c comm, stream unsafe.Pointer) result {
	return result(C.macdist_nccl_allreduce(C.ulonglong(buf), C.size_t(n), ncclFloat32, C.int(op), C.ncclComm_t(c), stream))
}

func broadcast(buf uint64, n int, root int, c comm, stream unsafe.Pointer) result {
	return result(C.macdist_nccl_broadcast(C.ulonglong(buf), C.size_t(n), ncclFloat32, C.int(root), C.ncclComm_t(c), stream))
}

func errorString(r result) string { return C.GoString(C.macdist_nccl_error_string(C.ncclResult_t(r))) }

// lastError is ncclGetLastError, which ignores its argument (NULL is
// allowed) and reports the calling thread's last error.
func lastError(c comm) string { return C.GoString(C.macdist_nccl_last_error(C.ncclComm_t(c))) }

func eventCreate() (event, error) {
	var e unsafe.Pointer
	err := cuErr("cuEventCreate", C.macdist_event_create(&e))
	return event(e), err
}

func eventRecord(e event, stream unsafe.Pointer) error {
	return cuErr("cuEventRecord", C.macdist_event_record(unsafe.Pointer(e), stream))
}

// eventQuery reports whether the work before e is done; cuEventQuery
// answers CUDA_ERROR_NOT_READY (600) while it is not.
func eventQuery(e event) (bool, error) {
	r := C.macdist_event_query(unsafe.Pointer(e))
	if r == 600 {
		return false, nil
	}
	return true, cuErr("cuEventQuery", r)
}

func eventDestroy(e event) error {
	return cuErr("cuEventDestroy", C.macdist_event_destroy(unsafe.Pointer(e)))
}

func cuErr(op string, r C.int) error {
	if r == 0 {
		return nil
	}
	if n := C.macdist_cu_error_name(r); n != nil {
		return fmt.Errorf("%s: %s", op, C.GoString(n))
	}
	return fmt.Errorf("%s: CUresult %d", op, int(r))
}
