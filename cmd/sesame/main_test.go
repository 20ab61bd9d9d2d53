package main

import (
	"context"
	"os"
	"testing"
)

// runMainEnv turns the test binary into the sesame command, so tests can
// run the real command line inside a network namespace (ns.Command).
const runMainEnv = "SESAME_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
