// Package netnstest is the testing layer over package netns, for tests
// that need the real kernel: they work only inside network namespaces they
// create and delete, so the host's rules, routes and links are never
// touched, and they send traffic only between those namespaces.
//
// A test package declares one Lab with its own name prefix; Lab.New makes
// a namespace that t.Cleanup deletes (and, the first time, deletes the
// leftovers of crashed runs), and Lab.Main, called from TestMain, fails the
// run if a namespace outlived its test. Require and RequireTool skip a test
// with the remedy when it cannot run here, and fail it instead under CI
// (CI set in the environment), where every test must really run. The other
// helpers wrap package netns and net for tests: Pair, Star, Do, Output,
// Listen and Dial fail the test on error.
//
// It builds on every system, but its helpers exist on Linux only. It is
// imported by tests only.
package netnstest
