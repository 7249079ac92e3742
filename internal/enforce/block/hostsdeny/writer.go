package hostsdeny

import "sync"

// Writer batches the changes to one File. Every ban adds a line and every
// end of a ban removes one; made one by one, each rewrites and syncs the
// whole file, so a flood of bans or a mass expiry would rewrite it
// thousands of times (and, for removals, inside the daemon's event loop).
// A Writer hands the changes to one goroutine, started when there is work
// and gone when there is none, which takes everything queued since its
// last write and applies it in one rewrite, in the order it was queued.
// Its methods are safe for concurrent use.
type Writer struct {
	file *File
	// onError is told of a failed batch that held removals: nobody
	// waits for those.
	onError func(error)

	mu      sync.Mutex
	pending []request
	busy    bool       // the goroutine is running
	idle    *sync.Cond // signalled when it stops
}

type request struct {
	change
	res chan result // nil: nobody waits (Remove)
}

type result struct {
	done bool
	err  error
}

// NewWriter returns a Writer of f; onError (may be nil) is told of
// removals that failed.
func NewWriter(f *File, onError func(error)) *Writer {
	w := &Writer{file: f, onError: onError}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// Path is the file's path.
func (w *Writer) Path() string { return w.file.Path }

// Add appends line unless the file holds it, as File.Add, in the next
// batch, and waits for that batch to be written: a block counts only once
// its line is on disk. It reports whether the line was added.
func (w *Writer) Add(line string) (bool, error) {
	res := make(chan result, 1)
	w.put(request{change: change{line: line, add: true}, res: res})
	r := <-res
	return r.done, r.err
}

// Remove queues the removal of every line equal to line, as File.Remove,
// and returns at once: the event loop lifts bans and must not wait for
// the disk. A failure goes to onError.
func (w *Writer) Remove(line string) {
	w.put(request{change: change{line: line}})
}

// Wait returns once every change queued before it is written.
func (w *Writer) Wait() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.busy {
		w.idle.Wait()
	}
}

func (w *Writer) put(r request) {
	w.mu.Lock()
	w.pending = append(w.pending, r)
	start := !w.busy
	w.busy = true
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

// run writes batches until nothing is queued.
func (w *Writer) run() {
	for {
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		if len(batch) == 0 {
			w.busy = false
			w.idle.Broadcast()
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		changes := make([]change, len(batch))
		removals := false
		for i, r := range batch {
			changes[i] = r.change
			removals = removals || !r.add
		}
		done, err := w.file.apply(changes)
		for i, r := range batch {
			if r.res != nil {
				res := result{err: err}
				if err == nil {
					res.done = done[i]
				}
				r.res <- res
			}
		}
		if err != nil && removals && w.onError != nil {
			w.onError(err)
		}
	}
}
