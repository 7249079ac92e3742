// Package linefile reads back the line files the daemon appends to and
// rotates (the history file, the event stream): the rotated copy first,
// then the file, each line handed to a parser, damaged lines reported by
// file and line and never fatal.
package linefile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/portsentry-go/portsentry/internal/config"
)

const (
	// MaxLine bounds a line: the daemon writes a few hundred bytes.
	MaxLine = 64 << 10
	// MaxBad is how many damaged lines Read returns one by one; the
	// rest are counted in one more error.
	MaxBad = 20
)

// Read reads path+".1" (the copy rotation keeps beside it), then path, so
// that lines come oldest first; a missing file is an empty one. parse is
// called with each line, its newline included; an error it returns makes
// the line a damaged one, as is a line longer than MaxLine. Damaged lines
// are skipped and returned as *config.Error values ("FILE:LINE: problem"),
// at most MaxBad of them and then one error counting the others; err is a
// file that could not be read.
func Read(path string, parse func(line []byte) error) (bad []error, err error) {
	var nbad int
	badLine := func(e error) {
		if nbad++; nbad <= MaxBad {
			bad = append(bad, e)
		}
	}
	for _, p := range []string{path + ".1", path} {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return bad, err
		}
		err = readLines(f, p, parse, badLine)
		f.Close()
		if err != nil {
			return bad, err
		}
	}
	if nbad > MaxBad {
		bad = append(bad, fmt.Errorf("%s: %d more damaged lines", path, nbad-MaxBad))
	}
	return bad, nil
}

func readLines(r io.Reader, name string, parse func([]byte) error, badLine func(error)) error {
	br := bufio.NewReaderSize(r, MaxLine)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			badLine(&config.Error{File: name, Line: n, Err: errors.New("line too long")})
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: %w", name, err)
		}
		if len(line) > 0 {
			if perr := parse(line); perr != nil {
				badLine(&config.Error{File: name, Line: n, Err: perr})
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}
