// Package blocktest is the conformance suite of the native blockers
// (block.Blocker): Run checks, against the real kernel, what package
// enforce relies on whichever mechanism is chosen, and each blocker's
// tests call it with a way to open that blocker inside a namespace:
//
//   - Add, Commit and List, IPv4 and IPv6, with a TTL and permanent (the
//     TTL listed as what remains of it where the mechanism keeps one, as
//     0 where the daemon keeps the expiry);
//   - adding a banned address again replaces its TTL, and adds no second
//     ban;
//   - Delete of an address that is not banned is not an error; within one
//     Commit the last Add or Delete of an address wins;
//   - Commit empties the queue: a later Commit does not apply it again;
//   - Close keeps the bans (a restart must not open the door), and a new
//     blocker lists them;
//   - thousands of bans in one Commit;
//   - a banned source really loses access to a service in the namespace,
//     another source keeps it, and the banned one gets it back after
//     Delete;
//   - the same on a container host (Publish: a bridge, a "container"
//     namespace, its service published on the host's port by DNAT, a
//     Docker-like forward filter of policy drop): the banned source loses
//     the published service and the container's routed address, whose
//     packets take the forward path and never reach the input path.
//
// Every check runs in network namespaces of its own (package netnstest),
// so the host's firewall and routes are never touched. What only one
// mechanism does (nftables' golden messages and trap, iptables' chain
// repair, routes' types) stays in that blocker's own tests.
//
// It builds on every system, but Run exists on Linux only. It is imported
// by tests only.
package blocktest
