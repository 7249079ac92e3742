package main

import "syscall"

// dupStderr points standard error at fd (Dup2 is missing on some Linux
// architectures; Dup3 is everywhere there).
func dupStderr(fd int) error { return syscall.Dup3(fd, 2, 0) }
