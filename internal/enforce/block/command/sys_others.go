//go:build !linux

package command

import "os"

// raisePriority does nothing here.
func raisePriority(int) (restore func()) { return func() {} }

// outputFile returns a file in dir, unlinked at once, for a command's
// output.
func outputFile(dir string) (*os.File, error) { return namedOutputFile(dir) }
