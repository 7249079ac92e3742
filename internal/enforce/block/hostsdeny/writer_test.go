package hostsdeny

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWriterBatchesRemovals: a burst of removals (a mass expiry) while the
// file is busy costs one rewrite more, not one per line, and leaves every
// other line where it was.
func TestWriterBatchesRemovals(t *testing.T) {
	const n = 200
	var before, after strings.Builder
	before.WriteString("# /etc/hosts.deny\n")
	after.WriteString("# /etc/hosts.deny\n")
	for i := range n {
		fmt.Fprintf(&before, "ALL: 10.0.%d.%d : DENY\n", i/256, i%256)
		if i%50 == 0 { // the administrator's own lines, between ours
			fmt.Fprintf(&before, "sshd: 192.0.2.%d\n", i/50)
			fmt.Fprintf(&after, "sshd: 192.0.2.%d\n", i/50)
		}
	}
	f := newFile(t, ptr(before.String()), 0o644)
	var errs []error
	w := NewWriter(f, func(err error) { errs = append(errs, err) })

	f.mu.Lock() // a rewrite under way while the burst arrives
	for i := range n {
		w.Remove(fmt.Sprintf("ALL: 10.0.%d.%d : DENY", i/256, i%256))
	}
	f.mu.Unlock()
	w.Wait()

	if f.rewrites > 2 {
		t.Errorf("%d removals rewrote the file %d times, want at most 2", n, f.rewrites)
	}
	if diff := cmp.Diff(after.String(), read(t, f.Path)); diff != "" {
		t.Errorf("file after the removals (-want +got):\n%s", diff)
	}
	if len(errs) > 0 {
		t.Errorf("errors: %v", errs)
	}
	onlyFile(t, f.Path)
}

// TestWriterOrder: changes apply in the order they were made, whichever
// batch they fall in: a ban lifted and made again ends with its line
// present (moved to the end), concurrent Adds each learn their result.
func TestWriterOrder(t *testing.T) {
	f := newFile(t, ptr("# h\n"+line1+"\nsshd: 192.0.2.9\n"), 0o644)
	w := NewWriter(f, nil)
	w.Remove(line1)
	if added, err := w.Add(line1); err != nil || !added {
		t.Fatalf("Add after Remove = %v, %v; want true, nil", added, err)
	}
	var wg sync.WaitGroup
	res := make([]bool, 4)
	for i := range res {
		wg.Go(func() {
			var err error
			if res[i], err = w.Add(line2); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := strings.Count(fmt.Sprint(res), "true"); got != 1 {
		t.Errorf("concurrent Adds of one line reported %v, want exactly one added", res)
	}
	want := "# h\nsshd: 192.0.2.9\n" + line1 + "\n" + line2 + "\n"
	if diff := cmp.Diff(want, read(t, f.Path)); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
}

// TestWriterErrors: Add returns the batch's error; a failed removal, which
// nobody waits for, goes to the error callback.
func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts.deny")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), p); err != nil {
		t.Fatal(err)
	}
	var got []error
	w := NewWriter(&File{Path: p}, func(err error) { got = append(got, err) })
	if _, err := w.Add(line1); !errors.Is(err, ErrUnsafe) {
		t.Errorf("Add = %v, want ErrUnsafe", err)
	}
	w.Remove(line1)
	w.Wait()
	if len(got) != 1 || !errors.Is(got[0], ErrUnsafe) {
		t.Errorf("removal errors %v, want one ErrUnsafe", got)
	}
}

// FuzzBatch: a batch of changes leaves the file exactly as the same
// changes made one by one (Add, Remove) would, and reports the same.
func FuzzBatch(f *testing.F) {
	f.Add("# hosts.deny\nsshd: 192.0.2.9\n", "+"+line1+"\n+"+line2+"\n-"+line1)
	f.Add("x\r\n"+line1, "-"+line1+"\n+"+line1+"\n+"+line1)
	f.Add("no final newline", "+a\n-no final newline\n+b")
	f.Add(" a \n\na\n", "-a\n+ a\n- \n+c")
	f.Fuzz(func(t *testing.T, before, ops string) {
		var changes []change
		for _, op := range strings.Split(ops, "\n") {
			if len(op) < 2 || (op[0] != '+' && op[0] != '-') || strings.ContainsRune(op, '\r') {
				continue
			}
			changes = append(changes, change{line: op[1:], add: op[0] == '+'})
		}
		dir := t.TempDir()
		one, batch := &File{Path: filepath.Join(dir, "one")}, &File{Path: filepath.Join(dir, "batch")}
		for _, fl := range []*File{one, batch} {
			if err := os.WriteFile(fl.Path, []byte(before), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var want []bool
		for _, c := range changes {
			var ok bool
			var err error
			if c.add {
				ok, err = one.Add(c.line)
			} else {
				ok, err = one.Remove(c.line)
			}
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, ok)
		}
		got, err := batch.apply(changes)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) == 0 {
			got = nil
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("results (-one by one +batch):\n%s", diff)
		}
		if diff := cmp.Diff(read(t, one.Path), read(t, batch.Path)); diff != "" {
			t.Errorf("file (-one by one +batch):\n%s", diff)
		}
		if batch.rewrites > 1 {
			t.Errorf("one batch rewrote the file %d times", batch.rewrites)
		}
	})
}
