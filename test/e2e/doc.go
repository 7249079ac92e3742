// Package e2e runs the real portsentry binary against real traffic.
//
// Each test builds a small network of its own out of Linux network
// namespaces: a target T where the daemon runs, a scanner S, a friend F (an
// ignored host) and a hub namespace holding the bridge that joins them, with
// IPv4 (10.231.0.0/24) and IPv6 (fd00:231::/64) addresses that exist only
// inside those namespaces. No lab namespace has a default route or any link
// out of the lab, so traffic cannot leave it; the tests send only to
// addresses in namespaces they created and delete again (t.Cleanup, also on
// failure), and namespaces left behind by a crashed run (prefix "pse2e-") are
// removed when the next run starts.
//
// The tests need root (to create namespaces) and iproute2's ip; without them
// they skip with the remedy, except under CI (CI set in the environment),
// where a missing prerequisite is a failure. The fail2ban tests also need
// fail2ban-regex and the nmap test nmap (Debian packages fail2ban, nmap).
//
// Run them with:
//
//	sudo go test ./test/e2e/ -v
package e2e
