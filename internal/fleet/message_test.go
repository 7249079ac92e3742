package fleet

import (
	"net/netip"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 40, 36, 0, time.UTC)
	banA, subjA := encodeBan("web1", netip.MustParseAddr("192.0.2.7"), "TCP SYN/Normal scan", 143, "TCP", at, at.Add(time.Hour), 2)
	lift6, subj6 := encodeLift("web1", netip.MustParsePrefix("2001:db8::/64"), at)
	if subjA != "portsentry.fleet.ban.web1.c0000207" || subj6 != "portsentry.fleet.ban.web1.20010db8000000000000000000000000_64" {
		t.Fatalf("subjects %q %q", subjA, subj6)
	}
	b, err := decode(subjA, banA)
	if err != nil || b.Lift || b.Member != "web1" || b.Addr() != netip.MustParseAddr("192.0.2.7") || b.Port != 143 ||
		b.Count != 2 || !b.At.Equal(at) || !b.Expires.Equal(at.Add(time.Hour)) || b.Reason != "TCP SYN/Normal scan" {
		t.Fatalf("decode ban: %+v, %v", b, err)
	}
	if b, err := decode(subj6, lift6); err != nil || !b.Lift || b.Prefix != netip.MustParsePrefix("2001:db8::/64") {
		t.Fatalf("decode lift: %+v, %v", b, err)
	}
	for _, tt := range []struct{ name, subj, data string }{
		{"another member's name", "portsentry.fleet.ban.web2.c0000207", string(banA)},
		{"another address", "portsentry.fleet.ban.web1.c0000208", string(banA)},
		{"bad member token", "portsentry.fleet.ban.web*1.c0000207", string(banA)},
		{"other subject", "portsentry.other.web1.c0000207", string(banA)},
		{"no target", "portsentry.fleet.ban.web1", string(banA)},
		{"version", subjA, `{"v":2,"op":"ban","member":"web1","addr":"192.0.2.7","at":"2026-11-22T01:40:36Z"}`},
		{"op", subjA, `{"v":1,"op":"nuke","member":"web1","addr":"192.0.2.7","at":"2026-11-22T01:40:36Z"}`},
		{"no time", subjA, `{"v":1,"op":"ban","member":"web1","addr":"192.0.2.7"}`},
		{"bad expiry", subjA, `{"v":1,"op":"ban","member":"web1","addr":"192.0.2.7","at":"2026-11-22T01:40:36Z","expires":"soon"}`},
		{"negative count", subjA, `{"v":1,"op":"ban","member":"web1","addr":"192.0.2.7","at":"2026-11-22T01:40:36Z","count":-1}`},
		{"unmasked prefix", "portsentry.fleet.ban.web1.0a000001_8", `{"v":1,"op":"lift","member":"web1","prefix":"10.0.0.1/8","at":"2026-11-22T01:40:36Z"}`},
		{"not JSON", subjA, `ban 192.0.2.7`},
		{"too large", subjA, string(make([]byte, maxMessage+1))},
	} {
		if _, err := decode(tt.subj, []byte(tt.data)); err == nil {
			t.Errorf("%s: decoded", tt.name)
		}
	}
}

func TestMemberNames(t *testing.T) {
	for name, ok := range map[string]bool{"web1": true, "a_b-C9": true, "": false, "web1.example": false, "a b": false, "a>": false, "é": false} {
		if ValidMember(name) != ok {
			t.Errorf("ValidMember(%q) = %v", name, !ok)
		}
	}
	if got := MemberFromHost("web1.example.net"); got != "web1-example-net" || !ValidMember(got) {
		t.Errorf("MemberFromHost: %q", got)
	}
}

// FuzzDecode: no input panics, and whatever decodes is what a member
// could have published: re-encoded, it decodes to the same.
func FuzzDecode(f *testing.F) {
	at := time.Date(2026, 11, 22, 1, 40, 36, 0, time.UTC)
	data, subj := encodeBan("web1", netip.MustParseAddr("192.0.2.7"), "TCP SYN/Normal scan", 143, "TCP", at, at.Add(time.Hour), 1)
	f.Add(subj, data)
	data, subj = encodeLift("web1", netip.MustParsePrefix("2001:db8::/64"), at)
	f.Add(subj, data)
	f.Add("portsentry.fleet.ban.x.00", []byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, subj string, data []byte) {
		b, err := decode(subj, data)
		if err != nil {
			return
		}
		var again []byte
		var s2 string
		if b.Lift {
			again, s2 = encodeLift(b.Member, b.Prefix, b.At)
		} else {
			again, s2 = encodeBan(b.Member, b.Addr(), b.Reason, b.Port, b.Proto, b.At, b.Expires, b.Count)
		}
		b2, err := decode(s2, again)
		if err != nil || s2 != subj || b2.Prefix != b.Prefix || b2.Member != b.Member || b2.Lift != b.Lift || !b2.At.Equal(b.At) || !b2.Expires.Equal(b.Expires) {
			t.Fatalf("%q %q decoded to %+v; re-encoded %q %q: %+v, %v", subj, data, b, s2, again, b2, err)
		}
	})
}
