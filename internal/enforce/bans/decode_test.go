package bans

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestScanRecord(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
	}{
		{`{"op":"ban","addr":"192.0.2.1","since":"2026-11-22T01:00:00Z","count":1}`, true},
		{` { "op" : "unban" , "prefix" : "10.0.0.0/8" } `, true},
		{`{}`, true},
		{`{"op":"ban","reason":"a\"b"}`, false},    // escape
		{`{"OP":"ban"}`, false},                    // case-folded key
		{`{"op":"ban","extra":1}`, false},          // unknown key
		{`{"op":"ban","count":1.0}`, false},        // fraction
		{`{"op":"ban","count":-1}`, false},         // negative
		{`{"op":"ban","count":01}`, false},         // leading zero
		{`{"op":"ban","port":65536}`, false},       // out of range
		{`{"op":null}`, false},                     // null
		{`{"op":"ban",}`, false},                   // trailing comma
		{`{"op":"ban"} x`, false},                  // trailing junk
		{`{"op":"ban"`, false},                     // cut
		{"{\"op\":\"b\xffn\"}", false},             // invalid UTF-8
		{"{\"op\":\"\x01\"}", false},               // control character
		{`{"reason":"é"}`, true},                   // valid UTF-8
		{`{"count":123456789012345678901}`, false}, // too many digits
		{`{"op":"ban","v":{"x":1}}`, false},        // nested
		{`{"op":"ban","since":"2026"}trailing`, false},
	}
	for _, tt := range tests {
		var w rawRecord
		if got := scanRecord([]byte(tt.line), &w); got != tt.ok {
			t.Errorf("scanRecord(%s) = %v, want %v", tt.line, got, tt.ok)
		}
	}
}

// FuzzScanRecord: whenever the fast decoder accepts a line, encoding/json
// accepts it too and reads the same fields.
func FuzzScanRecord(f *testing.F) {
	f.Add([]byte(`{"op":"ban","addr":"192.0.2.7","reason":"TCP SYN/Normal scan","port":143,"proto":"TCP","since":"2026-11-22T01:40:36Z","expires":"2026-11-22T02:40:36Z","count":1}`))
	f.Add([]byte(`{"op":"format","v":1}`))
	f.Add([]byte(`{"op":"ban","addr":"203.0.113.4","reason":"crowdsecurity/ssh-bf","origin":"crowdsec","since":"2026-11-22T01:42:00Z","expires":"2026-11-22T05:42:00Z","count":1}`))
	f.Add([]byte(`{"op":"unban","prefix":"2001:db8::/32"}`))
	f.Add([]byte(` {"count" : 0 ,"op":"past"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var w rawRecord
		if !scanRecord(line, &w) {
			return
		}
		var j wireRecord
		if err := json.Unmarshal(line, &j); err != nil {
			t.Fatalf("scanRecord accepted %q, encoding/json did not: %v", line, err)
		}
		got := wireRecord{
			Op: string(w.op), Addr: string(w.addr), Prefix: string(w.prefix), Reason: string(w.reason),
			Proto: string(w.proto), Origin: string(w.origin), Since: string(w.since), Expires: string(w.expires),
			V: w.v, Count: w.count, Port: w.port,
		}
		if diff := cmp.Diff(j, got); diff != "" {
			t.Fatalf("%q: (-json +scan):\n%s", line, diff)
		}
	})
}

// FuzzScanTime: whenever the fast time reader accepts a time, time.Parse
// reads the same instant.
func FuzzScanTime(f *testing.F) {
	for _, s := range []string{"2026-11-22T01:40:36Z", "2026-11-22T01:40:36.005Z", "2024-02-29T23:59:59.123456789Z", "2026-02-29T00:00:00Z", "2026-11-22T01:40:36.Z", "2026-11-22T24:00:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := scanTime([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("scanTime accepted %q, time.Parse did not: %v", s, err)
		}
		if !got.Equal(want) {
			t.Fatalf("%q: scanTime %v, time.Parse %v", s, got, want)
		}
	})
}
