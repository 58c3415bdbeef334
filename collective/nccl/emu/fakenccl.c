// fakenccl.c is a stand-in libnccl.so.2 for testing collective/nccl without
// a GPU, beside kernels/cuda/emu's emulated driver (whose device pointers
// are host pointers). Ranks are communicators of this process. It is strict
// where NCCL is and our code could be wrong: the ncclConfig_t is checked as
// NCCL's parseCommConfig reads it (size first, magic, version, blocking),
// the unique id must arrive by value intact, and the communicator must be
// non-blocking: set-up and every collective answer ncclInProgress until
// all ranks have joined or contributed, as a real non-blocking
// communicator may, so the caller's polling of ncclCommGetAsyncError is
// what completes them. A collective whose peers never come stays in
// progress until ncclCommAbort.
//
// Sums are formed in rank order, in float; ncclAvg divides the sum by the
// number of ranks.
//
// FAKE_NCCL_VERSION sets the version reported (default 22809);
// FAKE_NCCL_ONE_RANK_PER_GPU refuses communicators of several ranks, as
// NCCL before 2.30 refuses ranks that share a GPU.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int ncclResult_t;
enum {
	ncclSuccess = 0,
	ncclUnhandledCudaError = 1,
	ncclSystemError = 2,
	ncclInternalError = 3,
	ncclInvalidArgument = 4,
	ncclInvalidUsage = 5,
	ncclRemoteError = 6,
	ncclInProgress = 7,
};

typedef struct { char internal[128]; } ncclUniqueId;

#define MAXRANKS 8
#define MAXOPS 64

enum { opAllReduce = 1, opBroadcast = 2 };

struct group;

struct comm {
	struct group *g;
	int rank;
	int aborted;
	int released;
	long pending; // sequence number of the collective in progress, or -1
	long seq;     // collectives issued
};

struct op {
	long seq;
	int kind, redop, root;
	size_t count;
	int arrived;
	int done;
	float *buf[MAXRANKS];
};

struct group {
	char id[128];
	int nranks, joined;
	struct comm *ranks[MAXRANKS];
	struct op ops[MAXOPS]; // ring of collectives by sequence number
	struct group *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct group *groups;
static long ids;
static char lastErr[256];

static ncclResult_t fail(ncclResult_t r, const char *msg) {
	snprintf(lastErr, sizeof lastErr, "fakenccl: %s", msg);
	fprintf(stderr, "%s\n", lastErr);
	return r;
}

ncclResult_t ncclGetVersion(int *v) {
	const char *e = getenv("FAKE_NCCL_VERSION");
	*v = e ? atoi(e) : 22809;
	return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
	pthread_mutex_lock(&mu);
	memset(id, 0, sizeof *id);
	snprintf(id->internal, sizeof id->internal, "fakenccl-id-%ld", ++ids);
	// A recognisable tail, to catch an id truncated on its way.
	memcpy(id->internal + 120, "fakeTAIL", 8);
	pthread_mutex_unlock(&mu);
	return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(struct comm **out, int nranks, ncclUniqueId id, int rank, void *config) {
	if (config == NULL) return fail(ncclInvalidArgument, "config is NULL");
	size_t size;
	unsigned int magic, version;
	int blocking;
	memcpy(&size, config, sizeof size);
	if (size < 20 || size > 1024) return fail(ncclInvalidArgument, "config size implausible");
	memcpy(&magic, (char *)config + 8, 4);
	memcpy(&version, (char *)config + 12, 4);
	memcpy(&blocking, (char *)config + 16, 4);
	if (magic != 0xcafebeef) return fail(ncclInvalidArgument, "ncclConfig_t argument not initialized via NCCL_CONFIG_INITIALIZER");
	if (version < 21400) return fail(ncclInvalidArgument, "config version older than 2.14: blocking ignored");
	if (blocking != 0) return fail(ncclInvalidUsage, "this fake only does non-blocking communicators");
	if (strncmp(id.internal, "fakenccl-id-", 12) != 0 || memcmp(id.internal + 120, "fakeTAIL", 8) != 0)
		return fail(ncclInvalidArgument, "unique id garbled");
	if (nranks < 1 || nranks > MAXRANKS || rank < 0 || rank >= nranks) return fail(ncclInvalidArgument, "bad rank or size");
	pthread_mutex_lock(&mu);
	struct group *g;
	for (g = groups; g; g = g->next)
		if (memcmp(g->id, id.internal, 128) == 0) break;
	if (g == NULL) {
		g = calloc(1, sizeof *g);
		memcpy(g->id, id.internal, 128);
		g->nranks = nranks;
		g->next = groups;
		groups = g;
	}
	if (g->nranks != nranks || g->ranks[rank] != NULL) {
		pthread_mutex_unlock(&mu);
		return fail(ncclInvalidUsage, "size mismatch or rank joined twice");
	}
	struct comm *c = calloc(1, sizeof *c);
	c->g = g;
	c->rank = rank;
	c->pending = -1;
	g->ranks[rank] = c;
	g->joined++;
	*out = c;
	pthread_mutex_unlock(&mu);
	return ncclInProgress;
}

// complete finishes op o once every rank has contributed. mu is held.
static void complete(struct group *g, struct op *o) {
	if (o->done || o->arrived < g->nranks) return;
	if (o->kind == opAllReduce) {
		for (size_t i = 0; i < o->count; i++) {
			float s = o->buf[0][i];
			for (int r = 1; r < g->nranks; r++) s += o->buf[r][i];
			if (o->redop == 4) s /= (float)g->nranks;
			for (int r = 0; r < g->nranks; r++) o->buf[r][i] = s;
		}
	} else {
		for (int r = 0; r < g->nranks; r++)
			if (r != o->root) memcpy(o->buf[r], o->buf[o->root], o->count * sizeof(float));
	}
	o->done = 1;
}

ncclResult_t ncclCommGetAsyncError(struct comm *c, ncclResult_t *state) {
	if (c == NULL || state == NULL) return ncclInvalidArgument;
	pthread_mutex_lock(&mu);
	struct group *g = c->g;
	if (c->aborted) {
		*state = ncclInvalidUsage;
	} else if (g->joined < g->nranks) {
		*state = ncclInProgress;
	} else if (g->nranks > 1 && getenv("FAKE_NCCL_ONE_RANK_PER_GPU")) {
		// As NCCL before 2.30 does with ranks that share a GPU.
		*state = fail(ncclInvalidUsage, "Duplicate GPU detected");
	} else if (c->pending >= 0) {
		struct op *o = &g->ops[c->pending % MAXOPS];
		complete(g, o);
		if (o->done) {
			c->pending = -1;
			*state = ncclSuccess;
		} else {
			*state = ncclInProgress;
		}
	} else {
		*state = ncclSuccess;
	}
	pthread_mutex_unlock(&mu);
	return ncclSuccess;
}

static ncclResult_t enqueue(struct comm *c, int kind, const void *send, void *recv, size_t count, int dtype, int redop,
                            int root, void *stream) {
	if (c == NULL) return fail(ncclInvalidArgument, "NULL communicator");
	if (dtype != 7) return fail(ncclInvalidArgument, "datatype is not ncclFloat32");
	if (send != recv) return fail(ncclInvalidArgument, "not in place");
	if (stream == NULL) return fail(ncclInvalidArgument, "NULL stream");
	if (kind == opAllReduce && redop != 0 && redop != 4) return fail(ncclInvalidArgument, "op is neither ncclSum nor ncclAvg");
	pthread_mutex_lock(&mu);
	struct group *g = c->g;
	ncclResult_t r = ncclInProgress;
	if (c->aborted || g->joined < g->nranks || c->pending >= 0) {
		r = fail(ncclInvalidUsage, "collective on a communicator not ready");
		goto out;
	}
	if (kind == opBroadcast && (root < 0 || root >= g->nranks)) {
		r = fail(ncclInvalidArgument, "bad root");
		goto out;
	}
	long seq = c->seq++;
	struct op *o = &g->ops[seq % MAXOPS];
	if (o->seq != seq || o->arrived == 0) {
		if (o->arrived != 0 && !o->done) {
			r = fail(ncclInternalError, "too many collectives in flight");
			goto out;
		}
		memset(o, 0, sizeof *o);
		o->seq = seq;
		o->kind = kind;
		o->redop = redop;
		o->root = root;
		o->count = count;
	} else if (o->kind != kind || o->count != count || o->redop != redop || o->root != root) {
		r = fail(ncclInvalidUsage, "ranks issued different collectives");
		goto out;
	}
	o->buf[c->rank] = recv;
	o->arrived++;
	c->pending = seq;
	complete(g, o);
out:
	pthread_mutex_unlock(&mu);
	return r;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, int dtype, int redop, struct comm *c, void *stream) {
	return enqueue(c, opAllReduce, send, recv, count, dtype, redop, 0, stream);
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, int dtype, int root, struct comm *c, void *stream) {
	return enqueue(c, opBroadcast, send, recv, count, dtype, 0, root, stream);
}

// release marks c gone and answers ncclInProgress, as a non-blocking
// communicator does (NCCL frees it on a thread of its own). A second
// release is the double free it would be in NCCL: the process aborts.
static ncclResult_t release(struct comm *c) {
	if (c == NULL) return ncclInvalidArgument;
	pthread_mutex_lock(&mu);
	if (c->released) {
		fprintf(stderr, "fakenccl: communicator of rank %d released twice (a use after free in NCCL)\n", c->rank);
		abort();
	}
	c->released = 1;
	c->g->ranks[c->rank] = NULL;
	c->aborted = 1;
	pthread_mutex_unlock(&mu);
	// The comm is leaked on purpose: a use after Abort or Destroy then
	// reads aborted instead of freed memory.
	return ncclInProgress;
}

ncclResult_t ncclCommAbort(struct comm *c) {
	if (getenv("FAKE_NCCL_TRACE")) fprintf(stderr, "fakenccl: ncclCommAbort rank %d\n", c ? c->rank : -1);
	return release(c);
}

ncclResult_t ncclCommDestroy(struct comm *c) {
	if (getenv("FAKE_NCCL_TRACE")) fprintf(stderr, "fakenccl: ncclCommDestroy rank %d\n", c ? c->rank : -1);
	if (c != NULL && c->pending >= 0) return fail(ncclInvalidUsage, "destroy with a collective in progress");
	return release(c);
}

const char *ncclGetErrorString(ncclResult_t r) {
	switch (r) {
	case ncclSuccess: return "no error";
	case ncclInvalidArgument: return "invalid argument";
	case ncclInvalidUsage: return "invalid usage";
	case ncclInProgress: return "NCCL operation in progress";
	}
	return "fake error";
}

const char *ncclGetLastError(struct comm *c) {
	(void)c;
	return lastErr;
}
