// Package bench holds the benchmark script, bench/run, and the test that
// runs its quick mode end to end. The measuring code is the program
// bench/sesame-bench (its lab of network namespaces is built on
// internal/netnstest); the results of a full run are BENCHMARKS.md at
// the repository root.
package bench
