package dynlib

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/macdist/macdist/internal/natural"
)

// Candidate is one place a library may be loaded from: a file, or a bare
// soname left to the dynamic loader's search.
type Candidate struct {
	Path  string
	Where string // what found it: an environment variable, "loader", "cuda toolkit", …
}

// Loader reports whether c is a bare soname, for the dynamic loader to
// resolve through LD_LIBRARY_PATH, the binary's RUNPATH and ld.so.cache.
func (c Candidate) Loader() bool { return !strings.Contains(c.Path, "/") }

// Search reads the machine a library is looked for on. Its zero value
// reads the real one.
type Search struct {
	Getenv func(string) string            // nil means os.Getenv
	Glob   func(string) ([]string, error) // nil means filepath.Glob
	// Root prefixes every absolute pattern, so that a test can stand a
	// temporary tree in for /.
	Root string
	// NoLoader leaves out the bare sonames, which the real loader might
	// resolve, so that a test sees only its own tree.
	NoLoader bool
}

func (s Search) getenv(k string) string {
	if s.Getenv == nil {
		return os.Getenv(k)
	}
	return s.Getenv(k)
}

// EnvDirs returns the folders listed, colon-separated, in the environment
// variable name, in order, without empty entries.
func (s Search) EnvDirs(name string) []string {
	var dirs []string
	for _, d := range strings.Split(s.getenv(name), ":") {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// GlobAll expands the patterns under Root, in order, each pattern's matches
// highest version first (python3.12 before python3.9, cuda-13.0 before
// cuda-12.4), without repeats.
func (s Search) GlobAll(patterns ...string) []string {
	glob := s.Glob
	if glob == nil {
		glob = filepath.Glob
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range patterns {
		m, _ := glob(s.Root + p)
		sort.Slice(m, func(i, j int) bool { return natural.Less(m[j], m[i]) })
		for _, d := range m {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// ToolkitDirs are the lib64 folders of CUDA toolkits installed the usual
// way, /usr/local/cuda first (the symlink to the one the admin chose).
func (s Search) ToolkitDirs() []string {
	return s.GlobAll("/usr/local/cuda/lib64", "/usr/local/cuda-*/lib64", "/usr/local/cuda*/lib64")
}

// PythonDirs expands the folders libs (patterns relative to a
// site-packages, such as "nvidia/*/lib") in the site-packages of the
// active virtual environment (VIRTUAL_ENV), of environments under /opt
// (where the lent GPU machines keep PyTorch), of the system's Pythons and
// of ~/.local, in that order. No Python is run.
func (s Search) PythonDirs(libs ...string) []string {
	var sites []string
	if v := s.getenv("VIRTUAL_ENV"); v != "" {
		sites = append(sites, v+"/lib/python3*/site-packages")
	}
	sites = append(sites,
		"/opt/*/.venv/lib/python3*/site-packages",
		"/opt/*/venv/lib/python3*/site-packages",
		"/opt/*/lib/python3*/site-packages",
		"/usr/local/lib/python3*/site-packages",
		"/usr/local/lib/python3*/dist-packages",
		"/usr/lib/python3*/site-packages",
		"/usr/lib/python3/dist-packages",
	)
	if h := s.getenv("HOME"); h != "" {
		sites = append(sites, h+"/.local/lib/python3*/site-packages")
	}
	var pats []string
	for _, site := range sites {
		for _, l := range libs {
			pats = append(pats, site+"/"+l)
		}
	}
	return s.GlobAll(pats...)
}

// FileIn returns dir/name if it is a file (a symlink to one counts).
// Plans keep only such folder candidates, so that an error lists what was
// really tried.
func FileIn(dir, name string) (string, bool) {
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	return p, err == nil && !st.IsDir()
}
