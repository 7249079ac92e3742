package bans

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReadLeavesFileAlone: Read sees what Open sees, in force at the time
// given, beside a Store that holds the file, and changes nothing: no
// compaction, no lock taken, no .corrupt copy.
func TestReadLeavesFileAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bans.jsonl")
	torn := readAll(t, filepath.Join("testdata", "journal-torn.jsonl"))
	write(t, path, torn)

	at := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	got, err := Read(path, at)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, b := range got {
		lines = append(lines, b.Addr.String()+" "+b.Reason+" "+b.Expires.UTC().Format(time.RFC3339))
	}
	want := []string{"192.0.2.7 TCP SYN/Normal scan 2026-11-22T03:00:00Z", "2001:db8::7 manual 0001-01-01T00:00:00Z"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("bans in force at %v (-want +got):\n%s", at, diff)
	}
	if got, _ := Read(path, at.Add(2*time.Hour)); len(got) != 1 || !got[0].Permanent() {
		t.Errorf("two hours later: %+v, want the permanent ban alone", got)
	}
	if after := readAll(t, path); !bytes.Equal(after, torn) {
		t.Error("Read changed the file")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("Read left files beside the journal: %v", ents)
	}

	// Beside a Store that holds the file (the daemon), Read still works.
	s, err := Open(path, Policy{Base: time.Hour}, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := Read(path, at); err != nil || len(got) != 2 {
		t.Errorf("Read beside an open Store: %d bans, %v", len(got), err)
	}
}

func TestReadDamageAndMissing(t *testing.T) {
	dir := t.TempDir()
	if got, err := Read(filepath.Join(dir, "none"), time.Now()); got != nil || err != nil {
		t.Errorf("missing file: %v, %v; want nothing", got, err)
	}
	path := filepath.Join(dir, "bans.jsonl")
	write(t, path, []byte(`{"op":"format","v":1}`+"\n"+"damage\n"+`{"op":"ban","addr":"192.0.2.1","reason":"manual","since":"2026-11-22T01:00:00Z","count":1}`+"\n"))
	got, err := Read(path, time.Now())
	var ce *CorruptError
	if !errors.As(err, &ce) || len(ce.Lines) != 1 || ce.Lines[0].Line != 2 || len(got) != 1 {
		t.Errorf("damaged line: %v, %v; want the ban and line 2 reported", got, err)
	}
	write(t, path, []byte(`{"op":"format","v":2}`+"\n"))
	if _, err := Read(path, time.Now()); !errors.Is(err, ErrFormat) {
		t.Errorf("newer format: %v, want ErrFormat", err)
	}
	if _, err := Read(dir, time.Now()); err == nil {
		t.Error("a directory read without error")
	}
}
