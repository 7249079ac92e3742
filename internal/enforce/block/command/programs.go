package command

import (
	"os"
	"os/exec"
	"sync"
)

// programs is where the programs of simple lines were found on PATH.
//
// A search costs a stat and an access check per PATH directory (0.1 ms
// with the twelve directories of an interactive root shell on the 2-core
// benchmark VM), and it used to come between the probe and the block. A
// shell searches anew for each line; so does this cache, but after the
// command has started (Started.Wait refreshes the entry): a program
// installed earlier on PATH is used from the next line on, and one that is
// gone is searched for at once (Start retries).
var programs = programCache{m: map[programKey]string{}}

// programsMax bounds the cache: the programs are the first words of the
// configuration's templates, a handful, but reloads may change them.
const programsMax = 64

type programCache struct {
	mu sync.Mutex
	m  map[programKey]string
}

// programKey is a program's name and the PATH it was searched on.
type programKey struct{ name, path string }

// lookup returns where name was found on the current PATH, if it was.
func (c *programCache) lookup(name string) (string, bool) {
	k := programKey{name, os.Getenv("PATH")}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[k]
	return p, ok
}

// search searches PATH for name, as exec.LookPath does, and remembers the
// answer; a program not found is forgotten.
func (c *programCache) search(name string) (string, error) {
	k := programKey{name, os.Getenv("PATH")}
	p, err := exec.LookPath(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		delete(c.m, k)
		return "", err
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= programsMax {
		clear(c.m)
	}
	c.m[k] = p
	return p, nil
}

// forget drops name's entry for the current PATH.
func (c *programCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, programKey{name, os.Getenv("PATH")})
}
