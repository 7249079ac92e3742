package nft

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Golden netlink tests: the exact messages the blocker sends for each
// operation, recorded without a kernel (the library's test dialer) and
// compared with testdata/*.golden. Each case names the nft commands that
// do the same; TestKernelSameAsNft checks on a real kernel that the rules
// are what those commands make. A change in the bytes shows in review as a
// change of the golden file; `go test -run Golden -update` rewrites them.

// recorder collects the requests sent through a test-dialed connection
// and answers nothing: every acknowledgement and dump comes back empty.
type recorder struct{ msgs []netlink.Message }

func (r *recorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	r.msgs = append(r.msgs, req...)
	return nil, nil
}

func recordingBlocker(t *testing.T) (*Blocker, *recorder) {
	t.Helper()
	r := &recorder{}
	dial := func() (conn, error) { return nftables.New(nftables.WithTestDial(r.dial)) }
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	b, err := open(Options{}, c, dial, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, r
}

var msgNames = map[int]string{
	unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_NEWRULE: "NEWRULE",
	unix.NFT_MSG_DELRULE: "DELRULE", unix.NFT_MSG_NEWSET: "NEWSET", unix.NFT_MSG_DELSET: "DELSET",
	unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_GETSETELEM: "GETSETELEM", unix.NFT_MSG_DELSETELEM: "DELSETELEM",
	unix.NFT_MSG_GETRULE: "GETRULE", unix.NFT_MSG_GETCHAIN: "GETCHAIN", unix.NFT_MSG_DELCHAIN: "DELCHAIN",
}

var flagNames = []struct {
	f    netlink.HeaderFlags
	name string
}{
	{netlink.Request, "request"}, {netlink.Acknowledge, "ack"}, {netlink.Echo, "echo"},
	{netlink.Dump, "dump"}, {netlink.Create, "create"}, {netlink.Append, "append"},
}

// render prints messages one by one: type, flags, family, then the
// attributes as a tree (type numbers as in linux/netfilter/nf_tables.h;
// NUL-terminated text quoted, anything else in hex).
func render(msgs []netlink.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NFNL_MSG_BATCH_BEGIN:
			b.WriteString("BATCH BEGIN\n")
			continue
		case unix.NFNL_MSG_BATCH_END:
			b.WriteString("BATCH END\n")
			continue
		}
		name, ok := msgNames[int(m.Header.Type)&0xff]
		if !ok {
			name = fmt.Sprintf("MSG(%#x)", m.Header.Type)
		}
		var flags []string
		rest := m.Header.Flags
		for _, f := range flagNames {
			if rest&f.f == f.f {
				flags = append(flags, f.name)
				rest &^= f.f
			}
		}
		if rest != 0 {
			flags = append(flags, fmt.Sprintf("%#x", uint16(rest)))
		}
		fam := map[byte]string{unix.NFPROTO_INET: "inet"}[m.Data[0]]
		fmt.Fprintf(&b, "%s %s %s\n", name, strings.Join(flags, ","), fam)
		renderAttrs(&b, m.Data[4:], 1)
	}
	return b.String()
}

func renderAttrs(b *strings.Builder, data []byte, depth int) {
	indent := strings.Repeat("  ", depth)
	for len(data) >= 4 {
		l := int(binary.LittleEndian.Uint16(data[0:2]))
		typ := binary.LittleEndian.Uint16(data[2:4])
		if l < 4 || l > len(data) {
			fmt.Fprintf(b, "%sbad attribute: %x\n", indent, data)
			return
		}
		v := data[4:l]
		switch {
		case typ&unix.NLA_F_NESTED != 0 && wellFormed(v):
			fmt.Fprintf(b, "%s%d {\n", indent, typ&^unix.NLA_F_NESTED)
			renderAttrs(b, v, depth+1)
			fmt.Fprintf(b, "%s}\n", indent)
		case isText(v):
			fmt.Fprintf(b, "%s%d %q\n", indent, typ&^unix.NLA_F_NESTED, v[:len(v)-1])
		default:
			// The library flags some plain values as nested (the element
			// flags); the kernel ignores the flag there, and so does this.
			fmt.Fprintf(b, "%s%d %s\n", indent, typ&^unix.NLA_F_NESTED, hex.EncodeToString(v))
		}
		data = data[min((l+3)&^3, len(data)):]
	}
}

// wellFormed reports whether data is a sequence of attributes.
func wellFormed(data []byte) bool {
	for len(data) > 0 {
		if len(data) < 4 {
			return false
		}
		l := int(binary.LittleEndian.Uint16(data[0:2]))
		if l < 4 || l > len(data) {
			return false
		}
		data = data[min((l+3)&^3, len(data)):]
	}
	return true
}

// isText reports a NUL-terminated printable string of two or more
// characters (shorter ones are more often numbers).
func isText(v []byte) bool {
	if len(v) < 3 || v[len(v)-1] != 0 {
		return false
	}
	for _, c := range v[:len(v)-1] {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func TestGolden(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		// nft is what an admin would type for the same effect.
		nft []string
		// updates is the kernel behaviour the blocker assumes
		// (probeUpdates); the recorder answers no probe.
		updates bool
		do      func(t *testing.T, b *Blocker) error
	}{{
		name: "new",
		nft: []string{
			"nft list chain inet portsentry input (to see whether its hook or priority changed)",
			"nft list chain inet portsentry forward (likewise)",
			"nft add table inet portsentry",
			"nft add set inet portsentry ban4 '{ type ipv4_addr; size 1048576; flags dynamic,timeout; }'",
			"nft add set inet portsentry ban6 '{ type ipv6_addr; size 1048576; flags dynamic,timeout; }'",
			"nft add set inet portsentry allow4 '{ type ipv4_addr; flags interval; }'",
			"nft add set inet portsentry allow6 '{ type ipv6_addr; flags interval; }'",
			"nft add set inet portsentry trap_tcp '{ type inet_service; flags interval; }'",
			"nft add set inet portsentry trap_udp '{ type inet_service; flags interval; }'",
			"nft add set inet portsentry trap_ifaces '{ type ifname; }'",
			"nft add chain inet portsentry input '{ type filter hook input priority -10; policy accept; }'",
			"nft add chain inet portsentry trap",
			"nft add chain inet portsentry forward '{ type filter hook forward priority -10; policy accept; }'",
			"nft flush chain inet portsentry forward",
			"nft flush chain inet portsentry input",
			"nft flush chain inet portsentry trap",
			"nft flush set inet portsentry trap_tcp; nft flush set inet portsentry trap_udp; nft flush set inet portsentry trap_ifaces",
			"nft add rule inet portsentry input ip saddr @allow4 return",
			"nft add rule inet portsentry input ip6 saddr @allow6 return",
			"nft add rule inet portsentry input fib saddr type local return",
			"nft add rule inet portsentry input ip saddr @ban4 counter drop",
			"nft add rule inet portsentry input ip6 saddr @ban6 counter drop",
			"nft add rule inet portsentry input jump trap",
			"nft add rule inet portsentry forward ip saddr @ban4 ip saddr != @allow4 fib saddr type != local counter drop",
			"nft add rule inet portsentry forward ip6 saddr @ban6 ip6 saddr != @allow6 fib saddr type != local counter drop",
			"(the probe for timeout updates, in batches of its own:)",
			"nft add set inet portsentry probe '{ type ipv4_addr; flags timeout; }'; nft flush set inet portsentry probe",
			"nft add element inet portsentry probe '{ 192.0.2.1 timeout 1h, 192.0.2.2 timeout 1h }'",
			"nft add element inet portsentry probe '{ 192.0.2.1 timeout 2h, 192.0.2.2 }'",
			"nft list set inet portsentry probe",
			"nft delete set inet portsentry probe",
		},
		do: func(*testing.T, *Blocker) error { return nil },
	}, {
		name:    "add-ttl",
		nft:     []string{"nft add element inet portsentry ban4 '{ 198.51.100.1 timeout 1h }'", "nft add element inet portsentry ban6 '{ 2001:db9::1 timeout 1500ms }'"},
		updates: true,
		do: func(t *testing.T, b *Blocker) error {
			b.Add(a("198.51.100.1"), time.Hour)
			b.Add(a("2001:db9::1"), 1499*time.Millisecond+time.Microsecond) // rounded up
			return b.Commit()
		},
	}, {
		name:    "add-permanent",
		nft:     []string{"nft add element inet portsentry ban4 '{ 198.51.100.2 }'"},
		updates: true,
		do: func(t *testing.T, b *Blocker) error {
			b.Add(a("198.51.100.2"), 0)
			return b.Commit()
		},
	}, {
		name: "add-old-kernel",
		nft: []string{
			"nft add element inet portsentry ban4 '{ 198.51.100.1 }'",
			"nft delete element inet portsentry ban4 '{ 198.51.100.1 }'",
			"nft add element inet portsentry ban4 '{ 198.51.100.1 timeout 1h }'",
		},
		do: func(t *testing.T, b *Blocker) error {
			b.Add(a("198.51.100.1"), time.Hour)
			return b.Commit()
		},
	}, {
		name: "delete",
		nft: []string{
			"nft add element inet portsentry ban4 '{ 198.51.100.1 }'",
			"nft add element inet portsentry ban6 '{ 2001:db9::1 }'",
			"nft delete element inet portsentry ban4 '{ 198.51.100.1 }'",
			"nft delete element inet portsentry ban6 '{ 2001:db9::1 }'",
		},
		updates: true,
		do: func(t *testing.T, b *Blocker) error {
			b.Delete(a("198.51.100.1"))
			b.Delete(a("2001:db9::1"))
			return b.Commit()
		},
	}, {
		name: "allowed",
		nft: []string{
			"nft flush set inet portsentry allow4",
			"nft add element inet portsentry allow4 '{ 192.0.2.0/24, 198.51.100.7 }'",
			"nft flush set inet portsentry allow6",
			"nft add element inet portsentry allow6 '{ 2001:db8::/32 }'",
		},
		do: func(t *testing.T, b *Blocker) error {
			return b.SetAllowed([]netip.Prefix{
				netip.MustParsePrefix("192.0.2.0/24"),
				netip.MustParsePrefix("198.51.100.7/32"),
				netip.MustParsePrefix("2001:db8::/32"),
			})
		},
	}, {
		name: "trap",
		nft: []string{
			"nft flush chain inet portsentry trap",
			"nft flush set inet portsentry trap_tcp; nft flush set inet portsentry trap_udp; nft flush set inet portsentry trap_ifaces",
			"nft add element inet portsentry trap_tcp '{ 1-1023 }'",
			"nft add element inet portsentry trap_udp '{ 53, 65535 }'",
			"nft add element inet portsentry trap_ifaces '{ \"eth0\" }'",
			"nft add rule inet portsentry trap iifname != @trap_ifaces return",
			"nft add rule inet portsentry trap meta pkttype != host return",
			"nft add rule inet portsentry trap ct state established,related return",
			"nft add rule inet portsentry trap meta l4proto tcp socket transparent 0 return",
			"nft add rule inet portsentry trap meta l4proto tcp socket transparent 1 return",
			"nft add rule inet portsentry trap meta l4proto udp socket transparent 0 return",
			"nft add rule inet portsentry trap meta l4proto udp socket transparent 1 return",
			"nft add rule inet portsentry trap meta nfproto ipv4 tcp dport @trap_tcp tcp flags '&' '(ack|rst)' == 0 add @ban4 '{ ip saddr timeout 1h }' counter drop",
			"nft add rule inet portsentry trap meta nfproto ipv6 tcp dport @trap_tcp tcp flags '&' '(ack|rst)' == 0 add @ban6 '{ ip6 saddr timeout 1h }' counter drop",
			"nft add rule inet portsentry trap meta nfproto ipv4 udp dport @trap_udp add @ban4 '{ ip saddr timeout 1h }' counter drop",
			"nft add rule inet portsentry trap meta nfproto ipv6 udp dport @trap_udp add @ban6 '{ ip6 saddr timeout 1h }' counter drop",
		},
		do: func(t *testing.T, b *Blocker) error {
			return b.SetTrap(&Trap{TCP: ports(t, "1-1023"), UDP: ports(t, "53,65535"), TTL: time.Hour, Interfaces: []string{"eth0"}})
		},
	}, {
		name: "trap-permanent-all-interfaces",
		nft: []string{
			"nft flush chain inet portsentry trap",
			"nft flush set inet portsentry trap_tcp; nft flush set inet portsentry trap_udp; nft flush set inet portsentry trap_ifaces",
			"nft add element inet portsentry trap_tcp '{ 23 }'",
			"nft add rule inet portsentry trap iifname lo return",
			"nft add rule inet portsentry trap meta pkttype != host return",
			"nft add rule inet portsentry trap ct state established,related return",
			"nft add rule inet portsentry trap meta l4proto tcp socket transparent 0 return",
			"nft add rule inet portsentry trap meta l4proto tcp socket transparent 1 return",
			"nft add rule inet portsentry trap meta nfproto ipv4 tcp dport @trap_tcp tcp flags '&' '(ack|rst)' == 0 add @ban4 '{ ip saddr }' counter drop",
			"nft add rule inet portsentry trap meta nfproto ipv6 tcp dport @trap_tcp tcp flags '&' '(ack|rst)' == 0 add @ban6 '{ ip6 saddr }' counter drop",
		},
		do: func(t *testing.T, b *Blocker) error {
			return b.SetTrap(&Trap{TCP: ports(t, "23")})
		},
	}, {
		name: "trap-off",
		nft: []string{
			"nft flush chain inet portsentry trap",
			"nft flush set inet portsentry trap_tcp; nft flush set inet portsentry trap_udp; nft flush set inet portsentry trap_ifaces",
		},
		do: func(t *testing.T, b *Blocker) error { return b.SetTrap(nil) },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b, r := recordingBlocker(t)
			if tc.name != "new" {
				r.msgs = nil
			}
			b.updates = tc.updates
			if err := tc.do(t, b); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			out.WriteString("# The netlink messages of the same effect as:\n")
			for _, c := range tc.nft {
				out.WriteString("#   " + c + "\n")
			}
			out.WriteString(render(r.msgs))
			checkGolden(t, tc.name+".golden", out.String())
		})
	}
}
