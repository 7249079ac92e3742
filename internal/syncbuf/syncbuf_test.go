package syncbuf

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestLines(t *testing.T) {
	var b Buffer
	if got := b.Lines(); got != nil {
		t.Errorf("empty buffer: %q", got)
	}
	fmt.Fprint(&b, "one\ntwo\nthr")
	if got, want := b.Lines(), []string{"one", "two"}; !slices.Equal(got, want) {
		t.Errorf("Lines = %q, want %q (the partial line left out)", got, want)
	}
	fmt.Fprint(&b, "ee\n")
	if got, want := b.Lines(), []string{"one", "two", "three"}; !slices.Equal(got, want) {
		t.Errorf("Lines = %q, want %q", got, want)
	}
	if got := b.String(); got != "one\ntwo\nthree\n" {
		t.Errorf("String = %q", got)
	}
}

// TestConcurrent is for the race detector: writers and readers at once.
func TestConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintln(&b, "line")
				_ = b.Lines()
			}
		})
	}
	wg.Wait()
	if n := len(b.Lines()); n != 400 {
		t.Errorf("%d lines, want 400", n)
	}
}
