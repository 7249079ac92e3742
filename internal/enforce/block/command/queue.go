package command

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
)

// Runner runs one command line; Shell is the daemon's.
type Runner interface {
	Run(ctx context.Context, line string) error
}

// The daemon's background queue: a flood of scanners, or a mass expiry,
// costs at most Workers shells at once and QueueSize commands waiting.
const (
	Workers   = 4
	QueueSize = 256
)

// ErrQueueFull is wrapped by Submit's error when the queue is full.
var ErrQueueFull = errors.New("command: background queue full")

// Queue runs the commands the daemon does not wait for (UNKILL_ROUTE when
// bans end, a KILL_RUN_CMD ending in "&"), a fixed number at a time. Left
// to themselves they would start one shell, or one goroutine, per ban: a
// flood of forged sources would fork without bound. Submit never blocks;
// past the queue's size a command is refused. Safe for concurrent use.
type Queue struct {
	jobs    chan queued
	refused atomic.Uint64
}

type queued struct {
	r    Runner
	line string
	done func(error)
}

// NewQueue returns a queue holding up to size commands waiting for a
// worker; Run starts the workers.
func NewQueue(size int) *Queue {
	return &Queue{jobs: make(chan queued, size)}
}

// Submit queues line for r to run. done, when not nil, is called with the
// command's error once it ran, on a worker's goroutine. A full queue
// refuses the command (ErrQueueFull) and counts it; nothing waits.
func (q *Queue) Submit(r Runner, line string, done func(error)) error {
	select {
	case q.jobs <- queued{r: r, line: line, done: done}:
		return nil
	default:
		q.refused.Add(1)
		return ErrQueueFull
	}
}

// Refused is how many commands Submit refused since NewQueue.
func (q *Queue) Refused() uint64 { return q.refused.Load() }

// Run runs queued commands, workers at a time, until ctx is done: ctx is
// each command's context too, so a stop cancels those under way. It
// returns how many commands were left waiting.
func (q *Queue) Run(ctx context.Context, workers int) (left int) {
	var wg sync.WaitGroup
	var taken atomic.Int64 // taken from the queue after the stop, not run
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-q.jobs:
					// select picks at random when both are ready: a
					// stopped queue starts nothing more.
					if ctx.Err() != nil {
						taken.Add(1)
						return
					}
					err := j.r.Run(ctx, j.line)
					if j.done != nil {
						j.done(err)
					}
				}
			}
		})
	}
	wg.Wait()
	return len(q.jobs) + int(taken.Load())
}

// Backgrounded reports whether line ends in a lone "&", the shell's "run
// this in the background" (as 1.2's system() allowed in KILL_RUN_CMD), and
// returns line without it: the daemon then runs it in its Queue, where it
// is bounded and timed, instead of letting /bin/sh start a job nothing
// bounds. "&&", "\&" and redirections such as ">&" are not background
// marks.
func Backgrounded(line string) (string, bool) {
	s := strings.TrimRight(line, " \t")
	if !strings.HasSuffix(s, "&") {
		return line, false
	}
	rest := s[:len(s)-1]
	if rest == "" || strings.ContainsAny(rest[len(rest)-1:], "&\\<>|") {
		return line, false
	}
	rest = strings.TrimRight(rest, " \t")
	if rest == "" {
		return line, false
	}
	return rest, true
}
