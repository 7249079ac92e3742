package bans

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Read returns the bans in force at now in the file at path, as Active
// sorts them, without locking or changing the file: for a reader beside
// the running daemon (`portsentry report`). The daemon appends whole
// lines and renames whole snapshots into place, so a reader sees the
// record as of the daemon's last Sync; a line it is writing at that
// instant is cut short and dropped, as at a load. A missing file holds no
// bans. Damaged lines come as a *CorruptError beside the bans read; a
// file of a newer format is ErrFormat.
func Read(path string, now time.Time) ([]Ban, error) {
	s, _ := OpenOptions("", Options{Now: func() time.Time { return now }})
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bans: %w", err)
	}
	defer f.Close()
	var ld loader
	if err := ld.load(f, path, s); err != nil {
		return nil, err
	}
	bans := s.Active()
	if len(ld.bad) > 0 {
		return bans, &CorruptError{Lines: ld.bad}
	}
	return bans, nil
}
