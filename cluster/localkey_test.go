package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLocalKey(t *testing.T) {
	rt := t.TempDir()
	t.Setenv(RuntimeDirEnv, rt)
	const control = "127.0.0.1:40001"

	if k, err := LocalKey(control); err != nil || k != "" {
		t.Fatalf("nothing published: %q, %v", k, err)
	}
	remove, err := PublishLocalKey(control, "sekrit")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{control, "localhost:40001"} {
		if k, err := LocalKey(addr); err != nil || k != "sekrit" {
			t.Errorf("LocalKey(%s) = %q, %v; want the published key", addr, k, err)
		}
	}
	if k, _ := LocalKey("127.0.0.1:40002"); k != "" {
		t.Errorf("another port's key: %q", k)
	}
	path := filepath.Join(rt, "macdist", "control-40001.key")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want mode 0600", fi, err)
	}
	remove()
	if k, _ := LocalKey(control); k != "" {
		t.Errorf("after remove: %q", k)
	}

	// The file of an agent that died without removing it is passed over.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(dead.Process.Pid)+" old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := LocalKey(control); err != nil || k != "" {
		t.Errorf("a dead agent's key: %q, %v; want none", k, err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LocalKey(control); err == nil || !strings.Contains(err.Error(), "not a key file") {
		t.Errorf("a garbled file: %v", err)
	}

	// Only loopback runs publish, and only into a directory of this
	// user's that nobody else can read.
	if _, err := PublishLocalKey("10.1.2.3:40001", "k"); err == nil {
		t.Error("published the key of a run that listens beyond loopback")
	}
	if err := os.Chmod(filepath.Join(rt, "macdist"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := PublishLocalKey(control, "k"); err == nil || !strings.Contains(err.Error(), "open to other users") {
		t.Errorf("a directory others can read: %v", err)
	}
	t.Setenv(RuntimeDirEnv, t.TempDir())
	if err := os.Symlink(rt, filepath.Join(os.Getenv(RuntimeDirEnv), "macdist")); err != nil {
		t.Fatal(err)
	}
	if _, err := PublishLocalKey(control, "k"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a symbolic link for the directory: %v", err)
	}
}
