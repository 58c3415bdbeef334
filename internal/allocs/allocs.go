// Package allocs measures whether code allocates in a steady state, for
// the tests that promise a training step or a kernel allocates nothing.
package allocs

import "testing"

// tries bounds Steady's measurements.
const tries = 5

// Steady is testing.AllocsPerRun(runs, f) at its least over a few tries.
// The Go runtime itself allocates now and then when a goroutine blocks on
// a channel (a sudog, after a garbage collection has emptied the caches),
// as a kernel worker does when it goes to sleep between calls; on a loaded
// machine that falls inside a measurement more often. An allocation of
// f's own happens on every run and so shows in every try.
func Steady(runs int, f func()) float64 {
	n := testing.AllocsPerRun(runs, f)
	for i := 1; i < tries && n != 0; i++ {
		n = min(n, testing.AllocsPerRun(runs, f))
	}
	return n
}
