package ignore

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func prefixes(ss ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// addrCmp lets cmp compare netip values, whose fields are unexported.
var addrCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []netip.Prefix
		in4  []string // addresses that must match
		out  []string // addresses that must not match
	}{
		{
			name: "empty",
			in:   "",
			want: prefixes(),
			out:  []string{"0.0.0.0", "127.0.0.1", "::"},
		},
		{
			name: "debian static file",
			in:   "# comment\n#\n127.0.0.1/32\n0.0.0.0\n",
			want: prefixes("0.0.0.0/32", "127.0.0.1/32"),
			in4:  []string{"127.0.0.1", "0.0.0.0"},
			// 2.x flaw class: a bare 0.0.0.0 must never mean "everything".
			out: []string{"127.0.0.2", "10.0.0.1", "0.0.0.1", "255.255.255.255", "::"},
		},
		{
			// 2.x never matches an entry with host bits set.
			name: "host bits masked",
			in:   "10.1.2.3/8\n2001:db8::1/32\n",
			want: prefixes("10.0.0.0/8", "2001:db8::/32"),
			in4:  []string{"10.0.0.0", "10.1.2.3", "10.255.255.255", "2001:db8:ffff::1"},
			out:  []string{"11.0.0.0", "9.255.255.255", "2001:db9::"},
		},
		{
			// 2.x rejects CRLF.
			name: "CRLF",
			in:   "# windows\r\n192.0.2.1\r\n192.0.2.0/28\r\n",
			want: prefixes("192.0.2.0/28"),
			in4:  []string{"192.0.2.1", "192.0.2.15"},
			out:  []string{"192.0.2.16"},
		},
		{
			// 2.x rejects trailing spaces.
			name: "blanks around entries",
			in:   "  192.0.2.1  \n\t198.51.100.0/24\t\n \t \n",
			want: prefixes("192.0.2.1/32", "198.51.100.0/24"),
			in4:  []string{"192.0.2.1", "198.51.100.7"},
		},
		{
			// 2.x rejects upper-case hex.
			name: "upper-case hex",
			in:   "2001:DB8::ABCD\nFE80::/10\n",
			want: prefixes("2001:db8::abcd/128", "fe80::/10"),
			in4:  []string{"2001:db8::abcd", "fe80::1"},
			out:  []string{"2001:db8::abce"},
		},
		{
			// 2.x drops the last character without a final newline.
			name: "no final newline",
			in:   "10.0.0.1\n10.0.0.12",
			want: prefixes("10.0.0.1/32", "10.0.0.12/32"),
			in4:  []string{"10.0.0.12"},
			out:  []string{"10.0.0.13"},
		},
		{
			name: "comments anywhere",
			in:   "10.0.0.1 # the router\n10.0.0.2#tight\n   # indented\n",
			want: prefixes("10.0.0.1/32", "10.0.0.2/32"),
		},
		{
			name: "dotted netmask",
			in:   "192.168.0.0/255.255.0.0\n10.0.0.1/255.255.255.255\n172.16.0.0/255.240.0.0\n",
			want: prefixes("10.0.0.1/32", "172.16.0.0/12", "192.168.0.0/16"),
			in4:  []string{"192.168.44.1", "172.31.255.255"},
			out:  []string{"172.32.0.0"},
		},
		{
			name: "IPv4-mapped entries are IPv4",
			in:   "::ffff:10.0.0.1\n::ffff:192.168.0.0/112\n",
			want: prefixes("10.0.0.1/32", "192.168.0.0/16"),
			in4:  []string{"10.0.0.1", "::ffff:10.0.0.1", "192.168.3.4", "::ffff:192.168.3.4"},
			out:  []string{"10.0.0.2", "::ffff:10.0.0.2"},
		},
		{
			name: "zone dropped",
			in:   "fe80::1%eth0\n",
			want: prefixes("fe80::1/128"),
			in4:  []string{"fe80::1", "fe80::1%eth1"},
		},
		{
			name: "covered entries folded",
			in:   "10.1.0.0/16\n10.0.0.0/8\n10.0.0.0/8\n10.9.9.9\n::1\n::/0\n",
			want: prefixes("10.0.0.0/8", "::/0"),
			in4:  []string{"10.9.9.9", "::1", "2001:db8::1"},
			// ::/0 is "all IPv6"; it does not reach IPv4 via mapped addresses.
			out: []string{"11.0.0.0", "::ffff:11.0.0.0"},
		},
		{
			name: "explicit everything",
			in:   "0.0.0.0/0\n",
			want: prefixes("0.0.0.0/0"),
			in4:  []string{"0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4"},
			out:  []string{"::1"},
		},
		{
			name: "prefix boundaries",
			in:   "192.0.2.128/25\n2001:db8::/127\n",
			want: prefixes("192.0.2.128/25", "2001:db8::/127"),
			in4:  []string{"192.0.2.128", "192.0.2.255", "2001:db8::", "2001:db8::1"},
			out:  []string{"192.0.2.127", "193.0.0.0", "2001:db8::2", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse(strings.NewReader(tt.in), "test.ignore")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, l.Prefixes(), addrCmp, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Prefixes() mismatch (-want +got):\n%s", diff)
			}
			if l.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", l.Len(), len(tt.want))
			}
			for _, s := range tt.in4 {
				if !l.Contains(netip.MustParseAddr(s)) {
					t.Errorf("Contains(%s) = false, want true", s)
				}
			}
			for _, s := range tt.out {
				if l.Contains(netip.MustParseAddr(s)) {
					t.Errorf("Contains(%s) = true, want false", s)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		text string
		// msg is the start of Error() after "test.ignore:LINE: "; a
		// prefix so that net/netip may reword its own part.
		msg string
	}{
		{"garbage", "10.0.0.1\nlocalhost\n", 2, "localhost", `bad entry "localhost": ParseAddr("localhost"): `},
		{"two on a line", "10.0.0.1 10.0.0.2\n", 1, "10.0.0.1 10.0.0.2", `bad entry "10.0.0.1 10.0.0.2": one address or address/prefix per line`},
		{"octet too big", "# x\r\n\r\n10.0.0.256\r\n", 3, "10.0.0.256", `bad entry "10.0.0.256": ParseAddr("10.0.0.256"): `},
		{"prefix too long v4", "10.0.0.0/33", 1, "10.0.0.0/33", `bad entry "10.0.0.0/33": bad prefix length "33" (want 0-32)`},
		{"prefix too long v6", "::/129", 1, "::/129", `bad entry "::/129": bad prefix length "129" (want 0-128)`},
		{"empty prefix", "10.0.0.0/", 1, "10.0.0.0/", `bad entry "10.0.0.0/": bad prefix length "" (want 0-32)`},
		{"negative prefix", "10.0.0.0/-1", 1, "10.0.0.0/-1", `bad entry "10.0.0.0/-1": bad prefix length "-1" (want 0-32)`},
		{"huge prefix", "10.0.0.0/99999999999999999999", 1, "10.0.0.0/99999999999999999999", `bad entry "10.0.0.0/99999999999999999999": bad prefix length "99999999999999999999" (want 0-32)`},
		{"non-contiguous netmask", "192.168.0.0/255.0.255.0", 1, "192.168.0.0/255.0.255.0", `bad entry "192.168.0.0/255.0.255.0": netmask "255.0.255.0" is not contiguous`},
		{"bad netmask", "192.168.0.0/255.255.0", 1, "192.168.0.0/255.255.0", `bad entry "192.168.0.0/255.255.0": bad netmask "255.255.0"`},
		{"dotted netmask on IPv6", "2001:db8::/255.255.0.0", 1, "2001:db8::/255.255.0.0", `bad entry "2001:db8::/255.255.0.0": dotted netmask "255.255.0.0" needs an IPv4 address`},
		{"double slash", "10.0.0.0/8/8", 1, "10.0.0.0/8/8", `bad entry "10.0.0.0/8/8": bad prefix length "8/8" (want 0-32)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse(strings.NewReader(tt.in), "test.ignore")
			if l != nil {
				t.Errorf("list returned with error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse = %v, want *Error", err)
			}
			type view struct {
				File string
				Line int
				Text string
				Msg  string
			}
			wantMsg := "test.ignore:" + itoa(tt.line) + ": " + tt.msg
			got := view{e.File, e.Line, e.Text, err.Error()}
			if strings.HasPrefix(got.Msg, wantMsg) {
				got.Msg = wantMsg
			}
			want := view{"test.ignore", tt.line, tt.text, wantMsg}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestNewAndMerge(t *testing.T) {
	a := New(prefixes("10.0.0.0/8", "192.0.2.1/32")...)
	b := New(netip.MustParsePrefix("10.5.0.0/16"), netip.MustParsePrefix("2001:db8::/32"), netip.Prefix{})
	m := a.Merge(b)
	want := prefixes("10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32")
	if diff := cmp.Diff(want, m.Prefixes(), addrCmp); diff != "" {
		t.Errorf("Merge mismatch (-want +got):\n%s", diff)
	}
	// Merge must not change its operands.
	if diff := cmp.Diff(prefixes("10.0.0.0/8", "192.0.2.1/32"), a.Prefixes(), addrCmp); diff != "" {
		t.Errorf("Merge changed receiver (-want +got):\n%s", diff)
	}
	// The nil list is empty and usable.
	var nilList *List
	if nilList.Contains(netip.MustParseAddr("10.0.0.1")) || nilList.Len() != 0 || nilList.Prefixes() != nil {
		t.Error("nil List is not empty")
	}
	if diff := cmp.Diff(a.Prefixes(), nilList.Merge(a).Prefixes(), addrCmp); diff != "" {
		t.Errorf("nil.Merge(a) (-want +got):\n%s", diff)
	}
	if a.Contains(netip.Addr{}) {
		t.Error("Contains(zero Addr) = true")
	}
	// Prefixes returns a copy.
	p := a.Prefixes()
	p[0] = netip.MustParsePrefix("1.1.1.1/32")
	if !a.Contains(netip.MustParseAddr("10.1.1.1")) {
		t.Error("modifying Prefixes() changed the list")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "portsentry.ignore")
	static := main + ".static"
	if err := os.WriteFile(main, []byte("10.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(static, []byte("127.0.0.1/32\n0.0.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Load(main, static, filepath.Join(dir, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	want := prefixes("0.0.0.0/32", "10.0.0.1/32", "127.0.0.1/32")
	if diff := cmp.Diff(want, l.Prefixes(), addrCmp); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}

	if l, err := Load(); err != nil || l.Len() != 0 {
		t.Errorf("Load() = %v, %v; want empty list", l, err)
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("# ok\nnot-an-address\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(main, bad)
	var e *Error
	if !errors.As(err, &e) || e.File != bad || e.Line != 2 {
		t.Errorf("Load(bad) = %v; want *Error at %s:2", err, bad)
	}

	// A directory is not "missing": it is an error.
	_, err = Load(dir)
	if !errors.As(err, &e) || e.File != dir {
		t.Errorf("Load(dir) = %v; want *Error naming %s", err, dir)
	}
	if errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(dir) error wraps ErrNotExist: %v", err)
	}
}

func TestLocalPrefixes(t *testing.T) {
	defer func(f func() ([]net.Addr, error)) { interfaceAddrs = f }(interfaceAddrs)
	interfaceAddrs = func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("192.0.2.10"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("192.0.2.10").To4(), Mask: net.CIDRMask(24, 32)}, // duplicate, 4-byte form
			&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
			&net.IPNet{IP: net.ParseIP("2001:db8::10"), Mask: net.CIDRMask(64, 128)},
			&net.IPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"},
			&net.UnixAddr{Name: "/x", Net: "unix"}, // ignored
		}, nil
	}
	got, err := LocalPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	// Only the addresses, never the LAN: neighbours can scan too.
	want := prefixes("127.0.0.0/8", "127.0.0.1/32", "192.0.2.10/32", "::1/128", "2001:db8::10/128", "fe80::1/128")
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("LocalPrefixes mismatch (-want +got):\n%s", diff)
	}

	interfaceAddrs = func() ([]net.Addr, error) { return nil, errors.New("no netlink") }
	got, err = LocalPrefixes()
	if err == nil {
		t.Error("LocalPrefixes hid the error")
	}
	if diff := cmp.Diff(prefixes("127.0.0.0/8", "::1/128"), got, addrCmp); diff != "" {
		t.Errorf("LocalPrefixes on error (-want +got):\n%s", diff)
	}
}

// TestLocalPrefixesReal runs against this machine: loopback is always in.
func TestLocalPrefixesReal(t *testing.T) {
	ps, err := LocalPrefixes()
	if err != nil {
		t.Skipf("cannot list interfaces here: %v", err)
	}
	l := New(ps...)
	for _, s := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1"} {
		if !l.Contains(netip.MustParseAddr(s)) {
			t.Errorf("local list does not contain %s", s)
		}
	}
}

func TestContainsDoesNotAllocate(t *testing.T) {
	l, err := Parse(strings.NewReader("10.0.0.0/8\n192.0.2.1\n2001:db8::/32\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("::ffff:10.1.2.3")
	if n := testing.AllocsPerRun(100, func() { _ = l.Contains(a) }); n != 0 {
		t.Errorf("Contains allocates %v times, want 0", n)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "127.0.0.1/32\n0.0.0.0\n", "10.1.2.3/8", "2001:DB8::1/64\r\n", "  10.0.0.1  # x",
		"192.168.0.0/255.255.0.0", "192.168.0.0/255.0.255.0", "::ffff:10.0.0.0/104",
		"fe80::1%eth0", "::/0", "0.0.0.0/0", "10.0.0.0/33", "1.2.3.4 5.6.7.8", "/", "#",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		l, err := Parse(strings.NewReader(in), "fuzz")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 {
				t.Fatalf("error %v is not an *Error with a line", err)
			}
			return
		}
		ps := l.Prefixes()
		var b strings.Builder
		for _, p := range ps {
			// IPv4-mapped addresses are looked up as IPv4, so an IPv6
			// prefix reaching into ::ffff:0:0/96 (::/80) does not cover
			// them, by design.
			for _, a := range []netip.Addr{p.Addr(), lastAddr(p)} {
				if !a.Is4In6() && !l.Contains(a) {
					t.Fatalf("list does not contain %s of its own entry %s", a, p)
				}
			}
			// Every accepted entry must read back as itself.
			back, err := Parse(strings.NewReader(p.String()), "back")
			if err != nil {
				t.Fatalf("entry %s does not parse back: %v", p, err)
			}
			if got := back.Prefixes(); len(got) != 1 || got[0] != p {
				t.Fatalf("entry %s parsed back as %v", p, got)
			}
			b.WriteString(p.String() + "\n")
		}
		// And the whole canonical list reads back to the same list.
		again, err := Parse(strings.NewReader(b.String()), "again")
		if err != nil {
			t.Fatalf("canonical list does not parse back: %v", err)
		}
		if diff := cmp.Diff(ps, again.Prefixes(), addrCmp); diff != "" {
			t.Fatalf("canonical list changed on reparse (-first +again):\n%s", diff)
		}
	})
}

// LinkPrefixes: the IPv6 networks of the interfaces (masked, sorted,
// without duplicates) and fe80::/10; IPv4 and bare addresses are not.
func TestLinkPrefixes(t *testing.T) {
	defer func(f func() ([]net.Addr, error)) { interfaceAddrs = f }(interfaceAddrs)
	interfaceAddrs = func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("192.0.2.10"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("2001:db8:1:2::10"), Mask: net.CIDRMask(64, 128)},
			&net.IPNet{IP: net.ParseIP("2001:db8:1:2::11"), Mask: net.CIDRMask(64, 128)}, // same network
			&net.IPNet{IP: net.ParseIP("2001:db8:9::1"), Mask: net.CIDRMask(48, 128)},
			&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
			&net.IPAddr{IP: net.ParseIP("2001:db8:7::1")}, // no mask: not a network
		}, nil
	}
	got, err := LinkPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := prefixes("2001:db8:1:2::/64", "2001:db8:9::/48", "fe80::/10", "fe80::/64")
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("LinkPrefixes mismatch (-want +got):\n%s", diff)
	}
}
