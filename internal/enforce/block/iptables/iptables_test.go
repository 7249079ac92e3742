package iptables

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

var (
	a1 = netip.MustParseAddr("192.0.2.1")
	a2 = netip.MustParseAddr("192.0.2.2")
	a3 = netip.MustParseAddr("198.51.100.3")
	b1 = netip.MustParseAddr("2001:db8::1")
	b2 = netip.MustParseAddr("2001:db8::2")
)

func mustOpen(t *testing.T, f *fakeTables, opts Options) *Blocker {
	t.Helper()
	b, err := open(opts, f)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return b
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

func entries(addrs ...netip.Addr) []block.Entry {
	var e []block.Entry
	for _, a := range addrs {
		e = append(e, block.Entry{Addr: a})
	}
	return e
}

// TestOpenSetsUpOnce checks the exact commands of a first open (chain and
// jump created in both families) and of a second one (only checks).
func TestOpenSetsUpOnce(t *testing.T) {
	f := newFake()
	mustOpen(t, f, Options{})
	diff(t, "first open", []string{
		"/usr/sbin/iptables -w -n -L INPUT",
		"/usr/sbin/ip6tables -w -n -L INPUT",
		"/usr/sbin/iptables -w -C INPUT -j PORTSENTRY",
		"/usr/sbin/iptables -w -N PORTSENTRY",
		"/usr/sbin/iptables -w -I INPUT 1 -j PORTSENTRY",
		"/usr/sbin/iptables -w -C FORWARD -j PORTSENTRY",
		"/usr/sbin/iptables -w -N PORTSENTRY",
		"/usr/sbin/iptables -w -I FORWARD 1 -j PORTSENTRY",
		"/usr/sbin/ip6tables -w -C INPUT -j PORTSENTRY",
		"/usr/sbin/ip6tables -w -N PORTSENTRY",
		"/usr/sbin/ip6tables -w -I INPUT 1 -j PORTSENTRY",
		"/usr/sbin/ip6tables -w -C FORWARD -j PORTSENTRY",
		"/usr/sbin/ip6tables -w -N PORTSENTRY",
		"/usr/sbin/ip6tables -w -I FORWARD 1 -j PORTSENTRY",
	}, f.argvs())
	mustOpen(t, f, Options{})
	diff(t, "second open", []string{
		"/usr/sbin/iptables -w -n -L INPUT",
		"/usr/sbin/ip6tables -w -n -L INPUT",
		"/usr/sbin/iptables -w -C INPUT -j PORTSENTRY",
		"/usr/sbin/iptables -w -C FORWARD -j PORTSENTRY",
		"/usr/sbin/ip6tables -w -C INPUT -j PORTSENTRY",
		"/usr/sbin/ip6tables -w -C FORWARD -j PORTSENTRY",
	}, f.argvs())
	for _, prog := range []string{"iptables", "ip6tables"} {
		for _, hook := range []string{"INPUT", "FORWARD"} {
			diff(t, prog+" "+hook, []string{"-j PORTSENTRY"}, f.fam[prog].chains[hook])
		}
	}
	// InputOnly: INPUT alone.
	f = newFake()
	mustOpen(t, f, Options{InputOnly: true})
	diff(t, "InputOnly", []string{
		"/usr/sbin/iptables -w -n -L INPUT",
		"/usr/sbin/ip6tables -w -n -L INPUT",
		"/usr/sbin/iptables -w -C INPUT -j PORTSENTRY",
		"/usr/sbin/iptables -w -N PORTSENTRY",
		"/usr/sbin/iptables -w -I INPUT 1 -j PORTSENTRY",
		"/usr/sbin/ip6tables -w -C INPUT -j PORTSENTRY",
		"/usr/sbin/ip6tables -w -N PORTSENTRY",
		"/usr/sbin/ip6tables -w -I INPUT 1 -j PORTSENTRY",
	}, f.argvs())
}

// TestOptions checks that the program names and the chain are the ones
// given, with restore programs named after them.
func TestOptions(t *testing.T) {
	f := newFake()
	f.fam["iptables-legacy"] = f.fam["iptables"]
	f.fam["ip6tables-legacy"] = f.fam["ip6tables"]
	b := mustOpen(t, f, Options{IPv4: "iptables-legacy", IPv6: "ip6tables-legacy", Chain: "PS-BANS"})
	f.argvs()
	b.Add(a1, 0)
	b.Add(b1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "commit", []call{
		{Argv: "/usr/sbin/iptables-legacy -w -C INPUT -j PS-BANS"},
		{Argv: "/usr/sbin/iptables-legacy -w -C FORWARD -j PS-BANS"},
		{Argv: "/usr/sbin/iptables-legacy -w -S PS-BANS"},
		{Argv: "/usr/sbin/iptables-legacy-restore --noflush -w", Stdin: "*filter\n-A PS-BANS -s 192.0.2.1/32 -j DROP\nCOMMIT\n"},
		{Argv: "/usr/sbin/ip6tables-legacy -w -C INPUT -j PS-BANS"},
		{Argv: "/usr/sbin/ip6tables-legacy -w -C FORWARD -j PS-BANS"},
		{Argv: "/usr/sbin/ip6tables-legacy -w -S PS-BANS"},
		{Argv: "/usr/sbin/ip6tables-legacy-restore --noflush -w", Stdin: "*filter\n-A PS-BANS -s 2001:db8::1/128 -j DROP\nCOMMIT\n"},
	}, f.calls)
}

func TestInvalidOptions(t *testing.T) {
	for _, opts := range []Options{
		{Chain: "INPUT"},
		{Chain: "drop"},
		{Chain: "-j"},
		{Chain: "A B"},
		{Chain: "A\n-A INPUT -j ACCEPT"},
		{Chain: strings.Repeat("X", 29)},
		{IPv4: "-h"},
		{IPv6: "ip6tables -L"},
	} {
		f := newFake()
		if _, err := open(opts, f); err == nil || errors.Is(err, block.ErrUnavailable) {
			t.Errorf("open(%+v) = %v; want an invalid-option error", opts, err)
		}
		if len(f.calls) != 0 {
			t.Errorf("open(%+v) ran %v before rejecting the options", opts, f.argvs())
		}
	}
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*fakeTables)
	}{
		{"no iptables", func(f *fakeTables) { f.missing["iptables"] = true }},
		{"no iptables-restore", func(f *fakeTables) { f.missing["iptables-restore"] = true }},
		{"iptables fails", func(f *fakeTables) { f.fam["iptables"].broken = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			tc.setup(f)
			_, err := open(Options{}, f)
			if !errors.Is(err, block.ErrUnavailable) {
				t.Fatalf("open = %v; want an error wrapping block.ErrUnavailable", err)
			}
			if !strings.HasPrefix(err.Error(), "iptables: IPv4") {
				t.Errorf("error %q does not name the component and family", err)
			}
		})
	}
}

// TestNoIPv6 checks that a host without working ip6tables still gets IPv4
// bans, and learns at Commit why its IPv6 bans were not applied.
func TestNoIPv6(t *testing.T) {
	f := newFake()
	f.fam["ip6tables"].broken = true
	b := mustOpen(t, f, Options{})
	b.Add(a1, time.Hour)
	b.Add(b1, time.Hour)
	err := b.Commit()
	if !errors.Is(err, block.ErrUnavailable) || !strings.Contains(err.Error(), "1 IPv6 changes not applied") {
		t.Errorf("Commit = %v; want the IPv6 change reported unavailable", err)
	}
	got, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "List", entries(a1), got)
}

// TestCommit checks one Commit's exact commands and restore input: one
// restore per family, rules sorted, and List's reading of the result.
func TestCommit(t *testing.T) {
	f := newFake()
	b := mustOpen(t, f, Options{})
	f.argvs()
	b.Add(a3, time.Hour) // the TTL is ignored: no expiry in iptables
	b.Add(a1, 0)
	b.Add(b2, 0)
	b.Add(netip.MustParseAddr("::ffff:192.0.2.2"), 0) // mapped: banned as IPv4
	b.Add(netip.MustParseAddr("2001:db8::1%eth0"), 0) // the zone is dropped
	b.Delete(netip.MustParseAddr("203.0.113.9"))      // not banned: no -D
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "commit", []call{
		{Argv: "/usr/sbin/iptables -w -C INPUT -j PORTSENTRY"},
		{Argv: "/usr/sbin/iptables -w -C FORWARD -j PORTSENTRY"},
		{Argv: "/usr/sbin/iptables -w -S PORTSENTRY"},
		{Argv: "/usr/sbin/iptables-restore --noflush -w", Stdin: "*filter\n" +
			"-A PORTSENTRY -s 192.0.2.1/32 -j DROP\n" +
			"-A PORTSENTRY -s 192.0.2.2/32 -j DROP\n" +
			"-A PORTSENTRY -s 198.51.100.3/32 -j DROP\n" +
			"COMMIT\n"},
		{Argv: "/usr/sbin/ip6tables -w -C INPUT -j PORTSENTRY"},
		{Argv: "/usr/sbin/ip6tables -w -C FORWARD -j PORTSENTRY"},
		{Argv: "/usr/sbin/ip6tables -w -S PORTSENTRY"},
		{Argv: "/usr/sbin/ip6tables-restore --noflush -w", Stdin: "*filter\n" +
			"-A PORTSENTRY -s 2001:db8::1/128 -j DROP\n" +
			"-A PORTSENTRY -s 2001:db8::2/128 -j DROP\n" +
			"COMMIT\n"},
	}, f.calls)
	f.argvs()
	got, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "List", entries(a1, a2, a3, b1, b2), got)
	diff(t, "List commands", []string{
		"/usr/sbin/iptables -w -S PORTSENTRY",
		"/usr/sbin/ip6tables -w -S PORTSENTRY",
	}, f.argvs())

	b.Delete(a2)
	b.Delete(b1)
	b.Add(b2, 0) // banned already: no duplicate
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "restore inputs", []call{
		{Argv: "/usr/sbin/iptables-restore --noflush -w", Stdin: "*filter\n-D PORTSENTRY -s 192.0.2.2/32 -j DROP\nCOMMIT\n"},
		{Argv: "/usr/sbin/ip6tables-restore --noflush -w", Stdin: "*filter\n-D PORTSENTRY -s 2001:db8::1/128 -j DROP\nCOMMIT\n"},
	}, restores(f.calls))
	got, _ = b.List()
	diff(t, "List after delete", entries(a1, a3, b2), got)
}

// restores picks the restore runs out of calls.
func restores(calls []call) []call {
	var out []call
	for _, c := range calls {
		if strings.Contains(c.Argv, "-restore ") {
			out = append(out, c)
		}
	}
	return out
}

// TestCommitNoChange checks that a batch changing nothing runs no restore:
// re-adding a ban, deleting a missing one, an Add undone by a Delete.
func TestCommitNoChange(t *testing.T) {
	f := newFake()
	b := mustOpen(t, f, Options{})
	b.Add(a1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	f.argvs()
	b.Add(a1, time.Minute)
	b.Delete(a2)
	b.Add(a3, 0)
	b.Delete(a3) // the last call wins
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "commands", []string{
		"/usr/sbin/iptables -w -C INPUT -j PORTSENTRY",
		"/usr/sbin/iptables -w -C FORWARD -j PORTSENTRY",
		"/usr/sbin/iptables -w -S PORTSENTRY",
	}, f.argvs())
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "empty Commit", []string(nil), f.argvs())
}

// TestDeleteDuplicates checks that Delete removes every copy of a ban, so
// that one added twice by hand does not keep the address out.
func TestDeleteDuplicates(t *testing.T) {
	f := newFake()
	b := mustOpen(t, f, Options{})
	f.fam["iptables"].chains["PORTSENTRY"] = []string{"-s 192.0.2.1/32 -j DROP", "-p tcp -j ACCEPT", "-s 192.0.2.1/32 -j DROP"}
	b.Delete(a1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "rules left", []string{"-p tcp -j ACCEPT"}, f.fam["iptables"].chains["PORTSENTRY"])
}

// TestCommitRepairs checks that Commit puts back a jump or a chain that a
// firewall reload removed, before applying the batch.
func TestCommitRepairs(t *testing.T) {
	t.Run("jump removed", func(t *testing.T) {
		f := newFake()
		b := mustOpen(t, f, Options{})
		f.fam["iptables"].chains["INPUT"] = []string{"-p tcp -j ACCEPT"}
		// Docker, starting after the blocker, inserts its own rules at
		// the head of FORWARD; a reload of it flushes the chain.
		f.fam["iptables"].chains["FORWARD"] = []string{"-j DOCKER-USER"}
		f.argvs()
		b.Add(a1, 0)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		diff(t, "commands", []string{
			"/usr/sbin/iptables -w -C INPUT -j PORTSENTRY",
			"/usr/sbin/iptables -w -N PORTSENTRY",
			"/usr/sbin/iptables -w -I INPUT 1 -j PORTSENTRY",
			"/usr/sbin/iptables -w -C FORWARD -j PORTSENTRY",
			"/usr/sbin/iptables -w -N PORTSENTRY",
			"/usr/sbin/iptables -w -I FORWARD 1 -j PORTSENTRY",
			"/usr/sbin/iptables -w -S PORTSENTRY",
			"/usr/sbin/iptables-restore --noflush -w",
		}, f.argvs())
		diff(t, "INPUT", []string{"-j PORTSENTRY", "-p tcp -j ACCEPT"}, f.fam["iptables"].chains["INPUT"])
		diff(t, "FORWARD", []string{"-j PORTSENTRY", "-j DOCKER-USER"}, f.fam["iptables"].chains["FORWARD"])
	})
	t.Run("chain removed", func(t *testing.T) {
		f := newFake()
		b := mustOpen(t, f, Options{})
		f.fam["iptables"].chains = map[string][]string{"INPUT": nil, "FORWARD": nil}
		b.Add(a1, 0)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		diff(t, "chain", []string{"-s 192.0.2.1/32 -j DROP"}, f.fam["iptables"].chains["PORTSENTRY"])
		diff(t, "INPUT", []string{"-j PORTSENTRY"}, f.fam["iptables"].chains["INPUT"])
		diff(t, "FORWARD", []string{"-j PORTSENTRY"}, f.fam["iptables"].chains["FORWARD"])
	})
	t.Run("check fails oddly", func(t *testing.T) {
		// Exit code 4 (resource problem) is not "missing": inserting a
		// jump then could make a second one.
		f := newFake()
		b := mustOpen(t, f, Options{})
		f.fail["/usr/sbin/iptables -w -C INPUT -j PORTSENTRY"] = 4
		f.argvs()
		b.Add(a1, 0)
		if err := b.Commit(); err == nil || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("Commit = %v; want the check's failure", err)
		}
		diff(t, "commands", []string{"/usr/sbin/iptables -w -C INPUT -j PORTSENTRY"}, f.argvs())
	})
}

// TestCommitFailure checks that a failed restore is reported with the
// program's message, and that the queue is emptied all the same.
func TestCommitFailure(t *testing.T) {
	f := newFake()
	b := mustOpen(t, f, Options{})
	f.fail["/usr/sbin/iptables-restore --noflush -w"] = 1
	b.Add(a1, 0)
	b.Add(b1, 0)
	err := b.Commit()
	if err == nil || !strings.Contains(err.Error(), "iptables: IPv4: /usr/sbin/iptables-restore --noflush -w: exit status 1: injected failure") {
		t.Fatalf("Commit = %v; want the restore failure", err)
	}
	got, _ := b.List()
	diff(t, "List: the other family applied", entries(b1), got)
	f.argvs()
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	diff(t, "commands of the next, empty Commit", []string(nil), f.argvs())
}

func TestInvalidAddress(t *testing.T) {
	f := newFake()
	b := mustOpen(t, f, Options{})
	b.Add(netip.Addr{}, 0)
	b.Add(a1, 0)
	err := b.Commit()
	if err == nil || !strings.Contains(err.Error(), "1 invalid addresses") {
		t.Errorf("Commit = %v; want the invalid address reported", err)
	}
	got, _ := b.List()
	diff(t, "List", entries(a1), got)
}

func TestClose(t *testing.T) {
	f := newFake()
	b := mustOpen(t, f, Options{})
	b.Add(a1, 0)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	f.argvs()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	diff(t, "commands of Close", []string(nil), f.argvs())
	diff(t, "rules after Close", []string{"-s 192.0.2.1/32 -j DROP"}, f.fam["iptables"].chains["PORTSENTRY"])
	b.Add(a2, 0)
	if err := b.Commit(); err == nil {
		t.Error("Commit after Close succeeded")
	}
	if _, err := b.List(); err == nil {
		t.Error("List after Close succeeded")
	}
}

// TestParseRules reads real `iptables -S` outputs kept in testdata: from
// iptables-nft and -legacy, IPv4 and IPv6, with warnings and foreign rules.
func TestParseRules(t *testing.T) {
	for _, tc := range []struct {
		file string
		bits int
		want map[netip.Addr]int
	}{
		{"nft-v4.txt", 32, map[netip.Addr]int{a1: 1, a3: 1}},
		{"nft-v6.txt", 128, map[netip.Addr]int{b1: 1, netip.MustParseAddr("2001:db8:0:1::ff"): 1}},
		{"legacy-v4-warning.txt", 32, map[netip.Addr]int{a1: 2}},
		{"foreign-rules.txt", 32, map[netip.Addr]int{a2: 1}},
		{"empty.txt", 32, map[netip.Addr]int{}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			diff(t, "bans", tc.want, parseRules(out, "PORTSENTRY", tc.bits))
		})
	}
}

// FuzzParseRules checks that no output makes the parser panic, and that
// every ban it reports has the family's host prefix shape.
func FuzzParseRules(f *testing.F) {
	for _, name := range []string{"nft-v4.txt", "nft-v6.txt", "foreign-rules.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		for _, bits := range []int{32, 128} {
			for a, n := range parseRules(out, "PORTSENTRY", bits) {
				if a.Is4() != (bits == 32) || a.Zone() != "" || n < 1 {
					t.Errorf("parseRules(/%d) reported %v ×%d", bits, a, n)
				}
			}
		}
	})
}

// BenchmarkRestoreInput measures building the input of a 10 000-ban Commit.
func BenchmarkRestoreInput(b *testing.B) {
	ops := make(map[netip.Addr]bool, 10000)
	for i := range 10000 {
		ops[netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})] = true
	}
	for b.Loop() {
		restoreInput("PORTSENTRY", 32, ops, nil)
	}
}
