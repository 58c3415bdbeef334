package allocs

import "testing"

var sink []byte

func TestSteady(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func()
		want float64
	}{
		{"none", func() {}, 0},
		{"one", func() { sink = make([]byte, 64) }, 1},
		{"two", func() { sink = make([]byte, 64); sink = make([]byte, 128) }, 2},
	} {
		if got := Steady(4, tc.f); got != tc.want {
			t.Errorf("%s: %v allocations per run, want %v", tc.name, got, tc.want)
		}
	}
}
