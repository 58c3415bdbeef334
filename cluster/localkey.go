package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// RuntimeDirEnv is the directory under which LocalKeyDir keeps its files
// when set (the XDG base directory for a user's runtime files).
const RuntimeDirEnv = "XDG_RUNTIME_DIR"

// LocalKeyDir is the directory, readable by this user only, where agents
// publish the keys of runs that listen on loopback only: $XDG_RUNTIME_DIR/
// macdist, or macdist-UID in the temporary directory. It refuses a
// directory that is not this user's or that others may read.
func LocalKeyDir() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("macdist-%d", os.Getuid()))
	if rt := os.Getenv(RuntimeDirEnv); rt != "" {
		dir = filepath.Join(rt, "macdist")
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("cluster: key directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("cluster: key directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return "", fmt.Errorf("cluster: key directory %s is not a directory", dir)
	case !ok || int(st.Uid) != os.Getuid():
		return "", fmt.Errorf("cluster: key directory %s belongs to another user", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return "", fmt.Errorf("cluster: key directory %s is open to other users (mode %v): want 0700", dir, fi.Mode().Perm())
	}
	return dir, nil
}

// localKeyPath names the file of the run whose control service is at
// control, a loopback address.
func localKeyPath(control string) (string, error) {
	host, port, err := net.SplitHostPort(control)
	if err != nil {
		return "", fmt.Errorf("cluster: control address %q: %w", control, err)
	}
	if !IsLoopback(host) {
		return "", fmt.Errorf("cluster: %s is not a loopback address: only loopback runs publish their key", control)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", fmt.Errorf("cluster: control address %q: bad port", control)
	}
	dir, err := LocalKeyDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "control-"+port+".key"), nil
}

// PublishLocalKey writes key where LocalKey finds it for the run whose
// control service is at control (loopback), so that `macdist status` run
// by the same user on this machine needs no --cluster-key; other users
// cannot read it. remove deletes the file.
func PublishLocalKey(control, key string) (remove func(), err error) {
	path, err := localKeyPath(control)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return nil, fmt.Errorf("cluster: publishing the key: %w", err)
	}
	_, err = fmt.Fprintf(tmp, "%d %s\n", os.Getpid(), key)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("cluster: publishing the key: %w", err)
	}
	return func() { os.Remove(path) }, nil
}

// LocalKey returns the key PublishLocalKey published for the run whose
// control service is at control, or "" when there is none: no file, or
// the file of a process that is gone (an agent killed before it could
// remove it).
func LocalKey(control string) (string, error) {
	path, err := localKeyPath(control)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cluster: reading the run's key: %w", err)
	}
	pidStr, key, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 || key == "" {
		return "", fmt.Errorf("cluster: %s is not a key file (want \"PID KEY\")", path)
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return "", nil
	}
	return key, nil
}
