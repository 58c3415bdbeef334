package cpu

import "github.com/macdist/macdist/kernels"

// SgemmLoop is openBLASSgemmLoop, for the benchmarks of package cpu_test.
var SgemmLoop = openBLASSgemmLoop

// ModelTunings is modelTunings, for TestModelTunings.
var ModelTunings = modelTunings

// TuningOf spells out a tuning of ModelTunings.
func TuningOf(t tuning) (kernels.Layout, ConvAlgorithm) { return t.layout, t.alg }
