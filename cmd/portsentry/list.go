package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
)

// listFilter is what `portsentry list` shows of the bans in force. The
// daemon sends them all; the filter is applied here, so that it needs no
// change to the control protocol.
type listFilter struct {
	within netip.Prefix // bans inside this address or prefix; the zero Prefix: all
	origin string       // as bans.Ban.Source gives it; "": all
	reason string       // bans whose reason contains this, ignoring case; "": all
	count  bool         // print how many, not which
	json   bool         // a JSON array (control.PrintListJSON)
}

func listFlags(fs *flag.FlagSet, r *opRequest) {
	f := &r.list
	fs.StringVar(&f.origin, "origin", "", "only bans of this `ORIGIN`: detected (a probe), manual (portsentry block), crowdsec (a CrowdSec decision)")
	fs.StringVar(&f.reason, "reason", "", "only bans whose reason contains `TEXT` (any case): syn, udp, connect, manual")
	fs.BoolVar(&f.count, "count", false, "print how many bans match, not the bans")
	fs.BoolVar(&f.json, "json", false, "print one JSON array: address, reason, origin, port, proto, since, expires (null: never), count")
}

func listOperands(args []string, r *opRequest) error {
	f := &r.list
	switch {
	case f.origin == "", f.origin == bans.OriginDetected, f.origin == bans.OriginManual, f.origin == "crowdsec", strings.HasPrefix(f.origin, "fleet:"):
	default:
		return fmt.Errorf("-origin %q: want %s, %s, crowdsec or fleet:MEMBER", f.origin, bans.OriginDetected, bans.OriginManual)
	}
	switch len(args) {
	case 0:
	case 1:
		p, err := control.ParseTarget(args[0])
		if err != nil {
			return err
		}
		f.within = p
	default:
		return fmt.Errorf("want at most one ADDRESS or PREFIX, got %q", args)
	}
	return nil
}

// match reports whether b passes the filter. A ban of a prefix (an IPv6
// /64) matches an address or prefix it overlaps.
func (f listFilter) match(b bans.Ban) bool {
	if f.within.IsValid() {
		covered := netip.PrefixFrom(b.Addr, b.Addr.BitLen())
		if b.Bits > 0 {
			covered = netip.PrefixFrom(b.Addr, b.Bits).Masked()
		}
		if !f.within.Overlaps(covered) {
			return false
		}
	}
	if f.origin != "" && b.Source() != f.origin {
		return false
	}
	if f.reason != "" && !strings.Contains(strings.ToLower(b.Reason), strings.ToLower(f.reason)) {
		return false
	}
	return true
}

// present writes the bans that pass the filter as asked.
func (f listFilter) present(w io.Writer, all []bans.Ban, now time.Time) error {
	var bs []bans.Ban
	for _, b := range all {
		if f.match(b) {
			bs = append(bs, b)
		}
	}
	switch {
	case f.count:
		_, err := fmt.Fprintln(w, len(bs))
		return err
	case f.json:
		return control.PrintListJSON(w, bs)
	}
	return control.PrintList(w, bs, now)
}
