//go:build !unix

package data

func processCPUSeconds() float64 { return 0 }
