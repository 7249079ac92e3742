package selftest

import (
	"context"
	"strings"
)

// featureCheck describes one Feature on the checklist.
type featureCheck struct {
	f    Feature
	name string
	// required features fail the self-test when missing; the others are
	// warnings: the daemon has a fallback.
	required bool
	ok       string // the detail when it works
	remedy   string
	// needs is a feature that must work for this one to be tried.
	needs Feature
}

// features is the kernel part of the checklist, in order.
var features = []featureCheck{
	{f: PacketSocket, name: "packet socket (AF_PACKET)", required: true, needs: -1,
		ok:     "opened one",
		remedy: "modprobe af_packet (kernel option CONFIG_PACKET); stealth and advanced modes capture on it"},
	{f: SocketFilter, name: "classic BPF socket filter (SO_ATTACH_FILTER)", required: true, needs: PacketSocket,
		ok:     "the daemon's filter program attached",
		remedy: "a kernel with socket filters (CONFIG_NET, always on in distribution kernels); check that no seccomp profile blocks setsockopt"},
	{f: SockDiag, name: "service check (sock_diag)", needs: -1,
		ok:     "saw a TCP and a UDP socket bound in the namespace",
		remedy: "modprobe inet_diag tcp_diag udp_diag (CONFIG_INET_DIAG, CONFIG_INET_TCP_DIAG, CONFIG_INET_UDP_DIAG); without them the daemon reads /proc/net, slower"},
	{f: NFTables, name: "nftables over netlink", needs: -1,
		ok:     "created and deleted a table",
		remedy: "modprobe nf_tables (CONFIG_NF_TABLES); without it use BLOCKER=\"iptables\" or \"route\", or a KILL_ROUTE command"},
	{f: NFTSocket, name: "nft socket expression", needs: NFTables,
		ok:     "rule loaded",
		remedy: "modprobe nft_socket (CONFIG_NFT_SOCKET); KERNEL_TRAP needs it to tell a service's traffic from a probe"},
	{f: NFTConntrack, name: "nft ct expression", needs: NFTables,
		ok:     "rule loaded",
		remedy: "modprobe nft_ct (CONFIG_NFT_CT); KERNEL_TRAP needs it to let replies to this host's own connections through"},
	{f: NFTFib, name: "nft fib expression", needs: NFTables,
		ok:     "rule loaded",
		remedy: "modprobe nft_fib_inet (CONFIG_NFT_FIB_INET); BLOCKER=\"nftables\" needs it to never ban this host's own addresses"},
	{f: NFTSetTimeout, name: "nft sets with timeouts", needs: NFTables,
		ok:     "dynamic set, element and rule with timeouts loaded",
		remedy: "modprobe nft_set_hash (or a kernel of 4.19 or later, where set timeouts are built into nf_tables); BAN_TIME and KERNEL_TRAP with BLOCKER=\"nftables\" need them"},
}

// kernel runs the "Kernel and system" section and reports whether every
// required check passed, so that the end-to-end part can run.
func (r *runner) kernel(ctx context.Context) bool {
	r.section = SectionKernel
	if removed, err := r.sys.RemoveStale(NamePrefix); len(removed) > 0 || err != nil {
		res := Result{Name: "leftovers of an earlier self-test", Status: Info,
			Detail: "removed namespaces " + strings.Join(removed, ", ")}
		if err != nil {
			res.Status, res.Detail = Warn, err.Error()
			res.Remedy = "ip netns list | grep " + NamePrefix + ", then ip netns delete NAME"
		}
		r.add(res)
	}

	who, err := r.sys.Privileges()
	if err != nil {
		r.add(Result{Name: "privileges", Status: Fail, Detail: err.Error(),
			Remedy: "run it as root: sudo portsentry selftest"})
		r.skipKernel("needs the privileges above")
		return false
	}
	r.add(Result{Name: "privileges", Status: OK, Detail: who})

	name := r.id + "-k"
	ns, err := r.sys.NewNetns(name)
	if err != nil {
		r.add(Result{Name: "network namespaces", Status: Fail, Detail: err.Error(),
			Remedy: "a kernel with CONFIG_NET_NS; in a container, give it CAP_SYS_ADMIN (docker run --privileged)"})
		r.skipKernel("needs a network namespace")
		return false
	}
	removed := false
	remove := func() error {
		if removed {
			return nil
		}
		err := ns.Remove()
		removed = err == nil
		return err
	}
	r.onCleanup("namespace "+name, remove)
	r.add(Result{Name: "network namespaces", Status: OK, Detail: "created " + name + " for the checks below"})

	pass := true
	worked := make(map[Feature]bool, len(features))
	for _, fc := range features {
		if fc.needs >= 0 && !worked[fc.needs] {
			r.add(Result{Name: fc.name, Status: Skip, Detail: "needs " + featureName(fc.needs)})
			if fc.required {
				pass = false
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			r.add(Result{Name: fc.name, Status: Fail, Detail: "not run: " + err.Error()})
			pass = false
			continue
		}
		err := ns.Probe(ctx, fc.f)
		switch {
		case err == nil:
			worked[fc.f] = true
			r.add(Result{Name: fc.name, Status: OK, Detail: fc.ok})
		case fc.required:
			pass = false
			r.add(Result{Name: fc.name, Status: Fail, Detail: err.Error(), Remedy: fc.remedy})
		default:
			r.add(Result{Name: fc.name, Status: Warn, Detail: err.Error(), Remedy: fc.remedy})
		}
	}
	// The kernel checks' namespace is not needed any more; should this
	// fail, the clean-up tries again and reports it.
	_ = remove()

	r.add(forwardingResult(r.sys.Forwarding()))

	for _, tool := range []struct{ file, found, missing string }{
		{"iptables", "found", "not installed (not needed: BLOCKER=\"nftables\" and \"route\" work without it)"},
		{"nft", "found; used by this test's KILL_ROUTE", "not installed (not needed by the daemon, which talks netlink)"},
		{"ip", "found; the daemon under test is started with ip netns exec", "not installed; the daemon under test is started from a thread inside the namespace"},
	} {
		if p, err := r.sys.LookPath(tool.file); err == nil {
			r.add(Result{Name: tool.file + " program", Status: Info, Detail: p + ": " + tool.found})
		} else {
			r.add(Result{Name: tool.file + " program", Status: Info, Detail: tool.missing})
		}
	}
	return pass
}

// CheckForwarding is the name of the kernel section's line about this
// host's forwarding.
const CheckForwarding = "forwarding on this host"

// forwardingResult says whether this host forwards, and so whether the
// forward path (containers published by DNAT, routed hosts) is a way in
// that bans must cover.
func forwardingResult(v4, v6 bool) Result {
	var on []string
	if v4 {
		on = append(on, "IPv4 (net.ipv4.ip_forward=1)")
	}
	if v6 {
		on = append(on, "IPv6 (net.ipv6.conf.all.forwarding=1)")
	}
	if len(on) == 0 {
		return Result{Name: CheckForwarding, Status: Info, Detail: "off: every way in is the input path; " +
			"with BAN_FORWARD=\"1\" (the default) bans cover forwarding too, should it be turned on later (Docker does at its start)"}
	}
	return Result{Name: CheckForwarding, Status: Info, Detail: "this host forwards " + strings.Join(on, " and ") +
		": a router or a container host, whose containers published by DNAT are reached through the forward path; " +
		"bans cover it with BAN_FORWARD=\"1\" (the default), with nftables, iptables and routes (see \"Bans cover\" in portsentry status)"}
}

// skipKernel marks every feature check skipped.
func (r *runner) skipKernel(why string) {
	for _, fc := range features {
		r.add(Result{Name: fc.name, Status: Skip, Detail: why})
	}
}

// featureName is the checklist name of f.
func featureName(f Feature) string {
	for _, fc := range features {
		if fc.f == f {
			return fc.name
		}
	}
	return "an unknown feature"
}
