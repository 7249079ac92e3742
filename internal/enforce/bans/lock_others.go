//go:build !unix

package bans

import (
	"fmt"
	"os"
)

// lockFile opens the lock file without locking it: this OS has no flock,
// and portsentry runs on it only for development, so one daemon per file
// is left to the operator.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bans: %w", err)
	}
	return f, nil
}
