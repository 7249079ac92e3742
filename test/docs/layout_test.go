// Package docs checks that the README's description of the code stays
// true as packages come and go.
package docs

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// layout returns the folders the README's Layout block lists: its
// indented lines between "Layout." and "Where a new part goes", each
// starting with a folder ending in "/".
func layout(t *testing.T, readme string) map[string]bool {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Layout."):
			in = true
		case strings.HasPrefix(line, "Where a new part goes"):
			in = false
		case in && strings.HasPrefix(line, "    "):
			dir, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if strings.HasSuffix(dir, "/") {
				listed[strings.TrimSuffix(dir, "/")] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return listed
}

// goDirs returns every folder of the module that holds Go files, skipping
// testdata and hidden folders as the go tool does.
func goDirs(t *testing.T, root string) map[string]bool {
	t.Helper()
	dirs := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			rel, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			dirs[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestLayoutListsEveryPackage: a newcomer reads the README's layout to find
// where a part lives, so every package must be in it, and nothing that is
// gone.
func TestLayoutListsEveryPackage(t *testing.T) {
	root := filepath.Join("..", "..")
	listed := layout(t, filepath.Join(root, "README.md"))
	if len(listed) < 10 {
		t.Fatalf("README.md: found %d folders in the Layout block; has its first line (\"Layout.\") or its end (\"Where a new part goes\") changed?", len(listed))
	}
	var missing, stale []string
	for dir := range goDirs(t, root) {
		if dir != "." && !listed[dir] {
			missing = append(missing, dir)
		}
	}
	for dir := range listed {
		if _, err := os.Stat(filepath.Join(root, dir)); err != nil {
			stale = append(stale, dir)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	for _, d := range missing {
		t.Errorf("README.md, Layout: package %s/ is not listed", d)
	}
	for _, d := range stale {
		t.Errorf("README.md, Layout: %s/ is listed but does not exist", d)
	}
}

// TestPartREADMEs: every sensor and blocker package has a README in the
// same sections, in the same order, so that what one says is found at the
// same place in all.
func TestPartREADMEs(t *testing.T) {
	want := []string{"Name", "Description", "Syntax", "Examples", "Metrics", "Tests"}
	root := filepath.Join("..", "..")
	var dirs []string
	for _, parent := range []string{"internal/sensor", "internal/enforce/block"} {
		entries, err := os.ReadDir(filepath.Join(root, parent))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			// blocktest is the blockers' conformance suite, not a blocker.
			if e.IsDir() && e.Name() != "blocktest" {
				dirs = append(dirs, parent+"/"+e.Name())
			}
		}
	}
	if len(dirs) < 8 {
		t.Fatalf("found only %d sensor and blocker packages: %v", len(dirs), dirs)
	}
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(root, dir, "README.md"))
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		var got []string
		for _, line := range strings.Split(string(b), "\n") {
			if h, ok := strings.CutPrefix(line, "## "); ok {
				got = append(got, strings.TrimSpace(h))
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s/README.md: sections %q, want %q", dir, got, want)
		}
	}
}
