package command

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gate is a Runner whose commands run until the test opens it, and which
// remembers how many ran at once.
type gate struct {
	open    chan struct{}
	started chan string
	running atomic.Int32
	most    atomic.Int32
}

func (g *gate) Run(ctx context.Context, line string) error {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	g.started <- line
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestQueueBounded: a flood of commands submitted at once never runs more
// than the workers at a time, the queue holds its size, and the command
// after that is refused at once instead of blocking its caller.
func TestQueueBounded(t *testing.T) {
	const workers, size = 4, 16
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q := NewQueue(size)
	g := &gate{open: make(chan struct{}), started: make(chan string, workers+size)}
	var done sync.WaitGroup
	ran := func(err error) {
		if err != nil {
			t.Errorf("command failed: %v", err)
		}
		done.Done()
	}
	var runDone sync.WaitGroup
	runDone.Go(func() { q.Run(ctx, workers) })

	// The workers take the first commands and hold them...
	for range workers {
		done.Add(1)
		if err := q.Submit(g, "busy", ran); err != nil {
			t.Fatalf("Submit with idle workers: %v", err)
		}
	}
	for range workers {
		<-g.started
	}
	// ...the queue takes size more...
	for range size {
		done.Add(1)
		if err := q.Submit(g, "waiting", ran); err != nil {
			t.Fatalf("Submit into a queue with room: %v", err)
		}
	}
	// ...and refuses the rest without waiting for room.
	refused := make(chan error, 1)
	go func() { refused <- q.Submit(g, "one too many", ran) }()
	select {
	case err := <-refused:
		if !errors.Is(err, ErrQueueFull) {
			t.Errorf("Submit into a full queue = %v, want ErrQueueFull", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Submit into a full queue blocked")
	}
	if n := q.Refused(); n != 1 {
		t.Errorf("Refused() = %d, want 1", n)
	}

	close(g.open)
	done.Wait()
	if most := g.most.Load(); most != workers {
		t.Errorf("%d commands ran at once, want at most (and here exactly) %d", most, workers)
	}
	cancel()
	runDone.Wait()
}

// TestQueueStop: a stop cancels the command under way (its context is
// the queue's) and reports what was left waiting.
func TestQueueStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	q := NewQueue(8)
	g := &gate{open: make(chan struct{}), started: make(chan string, 8)}
	errs := make(chan error, 1)
	q.Submit(g, "running", func(err error) { errs <- err })
	q.Submit(g, "waiting", nil)
	left := make(chan int)
	go func() { left <- q.Run(ctx, 1) }()
	<-g.started
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("the command under way ended with %v, want context.Canceled", err)
	}
	if n := <-left; n != 1 {
		t.Errorf("Run left %d commands, want 1", n)
	}
}

func TestBackgrounded(t *testing.T) {
	tests := []struct {
		line, want string
		ok         bool
	}{
		{"/usr/local/bin/notify 192.0.2.7 &", "/usr/local/bin/notify 192.0.2.7", true},
		{"notify 192.0.2.7&", "notify 192.0.2.7", true},
		{"logger x && page-admin &  ", "logger x && page-admin", true},
		{"(sleep 1; echo done) &", "(sleep 1; echo done)", true},
		{"notify 192.0.2.7", "notify 192.0.2.7", false},
		{"a && b", "a && b", false},
		{"echo \\&", "echo \\&", false},
		{"cmd >&", "cmd >&", false},
		{"&", "&", false},
		{"  & ", "  & ", false},
	}
	for _, tt := range tests {
		got, ok := Backgrounded(tt.line)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Backgrounded(%q) = %q, %v; want %q, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}
