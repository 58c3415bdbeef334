package natural

import (
	"slices"
	"testing"
)

func TestLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"python3.9", "python3.12", true},
		{"python3.12", "python3.9", false},
		{"cuda-12.4", "cuda-13.0", true},
		{"cuda-12.10", "cuda-12.9", false},
		{"node-2", "node-10", true},
		{"a", "a", false},
		{"a", "ab", true},
		{"v007", "v7", false},
		{"v7", "v007", false},
		{"v0", "v00", false},
		{"v99999999999999999999998", "v99999999999999999999999", true}, // beyond uint64
	} {
		if got := Less(tc.a, tc.b); got != tc.less {
			t.Errorf("Less(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
	in := []string{"node-10", "node-2", "node-1", "a", "node-02x", "node-2a", "b1"}
	slices.SortFunc(in, func(a, b string) int {
		switch {
		case Less(a, b):
			return -1
		case Less(b, a):
			return 1
		}
		return 0
	})
	if want := []string{"a", "b1", "node-1", "node-2", "node-2a", "node-02x", "node-10"}; !slices.Equal(in, want) {
		t.Errorf("sorted %q, want %q", in, want)
	}
}
