// Package pkg checks the Debian package and the systemd unit that ship
// portsentry, as an administrator would meet them.
//
//   - The package is built by the one command (scripts/build-deb); its
//     contents, control fields, conffiles and maintainer scripts are checked,
//     lintian must report neither error nor warning, and
//     `systemd-analyze verify` and `systemd-analyze security` must pass on
//     the unit as packaged.
//   - Installation, upgrade and purge run for real in a throw-away Debian
//     root (debootstrap --variant=minbase, cached under .cache/pkgtest/):
//     first Debian's own portsentry 1.2 package (apt-get download), then
//     this one over it, with and without an administrator's changes.
//   - The packaged binary runs the way the unit runs it: inside a bounding
//     set of exactly CAP_NET_RAW, CAP_NET_ADMIN and CAP_NET_BIND_SERVICE
//     (setpriv), no new privileges, and a read-only file system apart from
//     its state and runtime directories; a real nmap SYN scan from a second
//     network namespace must be detected and blocked (nftables).
//
// Network rule: the only traffic the tests make goes between the network
// namespaces they create (prefix "pspkg-") and delete again; the Debian root
// runs in a network namespace of its own, so nothing the old package's
// scripts start can reach a network. Downloads (debootstrap, apt-get
// download) go to the Debian mirror apt is configured with.
//
// The tests need root and Debian's dpkg, lintian, debootstrap, systemd
// (systemd-analyze), util-linux (setpriv, unshare), nftables, nmap and
// iproute2 (scripts/test-deps installs them). Without them they skip with
// the remedy, except under CI (CI set), where that is a failure.
//
//	sudo go test ./test/pkg/ -v
package pkg
