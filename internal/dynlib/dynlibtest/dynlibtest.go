// Package dynlibtest builds the fake library trees that tests of a
// dynlib search run in.
package dynlibtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/macdist/macdist/internal/dynlib"
)

// Touch creates root/rel, and its folders, holding text that no loader
// takes for a library, and returns its path.
func Touch(t testing.TB, root, rel string) string {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Search is a search of the tree under root, seeing only the environment
// env and not the real loader's search.
func Search(root string, env map[string]string) dynlib.Search {
	return dynlib.Search{Getenv: func(k string) string { return env[k] }, Root: root, NoLoader: true}
}

// Paths renders candidates as "path (where)", for comparisons.
func Paths(cs []dynlib.Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Path + " (" + c.Where + ")"
	}
	return out
}
