//go:build unix && !linux

package main

import "syscall"

// dupStderr points standard error at fd.
func dupStderr(fd int) error { return syscall.Dup2(fd, 2) }
