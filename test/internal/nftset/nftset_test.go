package nftset

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Outputs of nft 1.0.6 (Debian 12).
const (
	timed = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "ban4", "table": "portsentry", "type": "ipv4_addr", "handle": 1, "flags": ["timeout"], "elem": [{"elem": {"val": "10.0.0.1", "timeout": 300, "expires": 299}}, "10.0.0.9"]}}]}`
	plain = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "ban6", "table": "lab", "type": "ipv6_addr", "handle": 2, "elem": ["fd00::1"]}}]}`
	empty = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "ban4", "table": "lab", "type": "ipv4_addr", "handle": 1}}]}`
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      []Elem
	}{
		{"timed", timed, []Elem{
			{Addr: netip.MustParseAddr("10.0.0.1"), Timed: true, Timeout: 300 * time.Second, Expires: 299 * time.Second},
			{Addr: netip.MustParseAddr("10.0.0.9")},
		}},
		{"plain", plain, []Elem{{Addr: netip.MustParseAddr("fd00::1")}}},
		{"empty", empty, nil},
	} {
		got, err := Parse([]byte(tc.out))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
	for _, bad := range []string{
		`not json`,
		`{"nftables": [{"set": {"elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}]}}]}`,
		`{"nftables": [{"set": {"elem": ["not an address"]}}]}`,
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%s) succeeded", bad)
		}
	}
	if got := Addrs([]Elem{{Addr: netip.MustParseAddr("10.0.0.1")}}); len(got) != 1 || got[0].String() != "10.0.0.1" {
		t.Errorf("Addrs = %v", got)
	}
}
