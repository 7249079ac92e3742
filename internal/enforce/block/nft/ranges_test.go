package nft

import (
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/portset"
)

func prefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

func spanStrings(s []addrSpan) []string {
	var out []string
	for _, r := range s {
		out = append(out, r.lo.String()+"-"+r.hi.String())
	}
	return out
}

func TestNewAllowList(t *testing.T) {
	l := newAllowList(append(prefixes(
		"10.1.2.3/8",              // host bits: the whole 10/8
		"10.200.0.0/16",           // inside 10/8
		"11.0.0.0/8",              // adjacent to 10/8: merged
		"192.0.2.7/32",            //
		"::ffff:198.51.100.0/120", // IPv4-mapped: 198.51.100.0/24
		"2001:db8::/32",
		"2001:db8:1::/48",
		"::ffff:0:0/95", // shorter than /96: stays IPv6
		"255.255.255.255/32",
	), netip.Prefix{}))
	want4 := []string{"10.0.0.0-11.255.255.255", "192.0.2.7-192.0.2.7", "198.51.100.0-198.51.100.255", "255.255.255.255-255.255.255.255"}
	want6 := []string{"::fffe:0:0-::ffff:255.255.255.255", "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"}
	if diff := cmp.Diff(want4, spanStrings(l.v4)); diff != "" {
		t.Errorf("v4 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want6, spanStrings(l.v6)); diff != "" {
		t.Errorf("v6 (-want +got):\n%s", diff)
	}
	for a, want := range map[string]bool{
		"10.0.0.0": true, "11.255.255.255": true, "12.0.0.0": false, "9.255.255.255": false,
		"192.0.2.7": true, "192.0.2.8": false, "198.51.100.200": true, "255.255.255.255": true,
		"2001:db8::1": true, "2001:db9::": false, "::": false,
	} {
		if got := l.contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("contains(%s) = %v", a, got)
		}
	}
	var empty allowList
	if empty.contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("the empty list contains something")
	}
}

// TestAllowListContainsProperty: contains agrees with checking every
// prefix, on random lists.
func TestAllowListContainsProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addr := func() netip.Addr {
		// A small space, so that prefixes overlap and addresses hit them.
		return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	for range 200 {
		var ps []netip.Prefix
		for range r.IntN(8) {
			ps = append(ps, netip.PrefixFrom(addr(), 14+r.IntN(19)).Masked())
		}
		l := newAllowList(ps)
		for range 200 {
			a := addr()
			want := false
			for _, p := range ps {
				want = want || p.Contains(a)
			}
			if got := l.contains(a); got != want {
				t.Fatalf("%v: contains(%v) = %v, want %v", ps, a, got, want)
			}
		}
	}
}

func ivString(ivs []interval) string {
	var b strings.Builder
	for _, iv := range ivs {
		b.WriteString(hex.EncodeToString(iv.key))
		if iv.end {
			b.WriteString("/end")
		}
		b.WriteString(" ")
	}
	return strings.TrimSpace(b.String())
}

func TestIntervals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spans []span
		want  string
	}{
		{"none", nil, ""},
		{"one port", []span{{be16(22), be16(22)}}, "0000/end 0016 0017/end"},
		{"from zero", []span{{be16(0), be16(9)}}, "0000 000a/end"},
		{"to the top", []span{{be16(1), be16(1023)}, {be16(65000), be16(65535)}}, "0000/end 0001 0400/end fde8"},
		{"everything", []span{{be16(0), be16(65535)}}, "0000"},
		{"address", []span{{[]byte{192, 0, 2, 0}, []byte{192, 0, 2, 255}}}, "00000000/end c0000200 c0000300/end"},
	} {
		if got := ivString(intervals(tc.spans)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPortSpans(t *testing.T) {
	s, err := portset.Parse("1-3,7,9,10,65535")
	if err != nil {
		t.Fatal(err)
	}
	got := ivString(intervals(portSpans(&s)))
	if want := "0000/end 0001 0004/end 0007 0008/end 0009 000b/end ffff"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	var empty portset.Set
	if sp := portSpans(&empty); len(sp) != 0 {
		t.Errorf("empty set: %v", sp)
	}
}
