// Package testsupport holds the harnesses of the tests and benchmarks: real
// services started and torn down per test (testenv) and the benchmarks'
// throwaway stack (benchutil). Only tests and bench/ import it.
package testsupport
