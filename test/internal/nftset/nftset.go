// Package nftset reads the elements of an nftables address set as
// `nft -j list set FAMILY TABLE SET` prints them: the end-to-end,
// package and scan-lab tests read ban sets (the daemon's inet portsentry
// ban4/ban6, or a lab's own) with it.
package nftset

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// Elem is one element of an address set.
type Elem struct {
	Addr netip.Addr
	// Timed says the element has a timeout: Timeout is its whole
	// lifetime, Expires what remains of it (whole seconds, as nft prints
	// them). An element without one never expires.
	Timed            bool
	Timeout, Expires time.Duration
}

// Parse reads the output of `nft -j list set`: the elements of every set
// in it, plain addresses or addresses with a timeout. Anything else (an
// interval, a concatenation) is an error.
func Parse(out []byte) ([]Elem, error) {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nft -j output: %w", err)
	}
	var elems []Elem
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, raw := range o.Set.Elem {
			e, err := parseElem(raw)
			if err != nil {
				return elems, err
			}
			elems = append(elems, e)
		}
	}
	return elems, nil
}

func parseElem(raw json.RawMessage) (Elem, error) {
	var e Elem
	var val string
	var timed struct {
		Elem struct {
			Val     string `json:"val"`
			Timeout int    `json:"timeout"`
			Expires int    `json:"expires"`
		} `json:"elem"`
	}
	switch {
	case json.Unmarshal(raw, &val) == nil:
	case json.Unmarshal(raw, &timed) == nil && timed.Elem.Val != "":
		val = timed.Elem.Val
		e.Timed = true
		e.Timeout = time.Duration(timed.Elem.Timeout) * time.Second
		e.Expires = time.Duration(timed.Elem.Expires) * time.Second
	default:
		return e, fmt.Errorf("unexpected set element %s", raw)
	}
	a, err := netip.ParseAddr(val)
	if err != nil {
		return e, fmt.Errorf("set element %q: %w", val, err)
	}
	e.Addr = a
	return e, nil
}

// Addrs returns the elements' addresses, in the set's order.
func Addrs(elems []Elem) []netip.Addr {
	out := make([]netip.Addr, len(elems))
	for i, e := range elems {
		out[i] = e.Addr
	}
	return out
}
