package cpu

// SgemmLoop is openBLASSgemmLoop, for the benchmarks of package cpu_test.
var SgemmLoop = openBLASSgemmLoop

// ModelLayouts is modelLayouts, for TestModelLayouts.
var ModelLayouts = modelLayouts
