package netns

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestIDAndOwner(t *testing.T) {
	id := ID("pstest-")
	rest, ok := strings.CutPrefix(id, Own("pstest-"))
	if !ok || len(rest) != 6 {
		t.Fatalf("ID = %q, want pstest-%d- and six hex digits", id, os.Getpid())
	}
	if id == ID("pstest-") {
		t.Error("two IDs are equal")
	}
	for name, want := range map[string]int{
		id + "-t":               os.Getpid(),
		"pstest-42-abcdef-role": 42,
		"pstest-42":             42,
		"pstest-x-abcdef-t":     0,
		"pstest--1-abcdef":      0,
		"other-42-abcdef-t":     0,
		"pstest-0-abcdef-t":     0,
	} {
		if got := Owner("pstest-", name); got != want {
			t.Errorf("Owner(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestOnLink(t *testing.T) {
	got := OnLink(netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::3"))
	want := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/24"), netip.MustParsePrefix("fd00::3/64")}
	if !slices.Equal(got, want) {
		t.Errorf("OnLink = %v, want %v", got, want)
	}
}
