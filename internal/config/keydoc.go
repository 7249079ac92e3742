package config

//go:generate go run ./gendoc

// The documentation of every key, the one source of the key sections of
// portsentry.conf(5) and of docs/configuration.md (`go generate
// ./internal/config` writes both). A key added to keys without an entry
// here fails TestEveryKeyDocumented; a documented range or list of values
// the parser does not accept fails TestKeyDocValues.
//
// Text is a small Markdown: `code`, **strong**, *emphasis*, and
// [text](#anchor) links (the man page keeps the text). Values is one of: a
// range "LO–HI" (with " (seconds)" for durations), checked against the
// parser; a list of values in backquotes ("`0`, `1`"), checked too; or
// words ("port list", "path", "command containing `$TARGET$`").

// KeyDoc documents one key, or keys that share one description.
type KeyDoc struct {
	Keys    []string
	Values  string
	Meaning string
}

// KeyGroup is a section of the reference: the keys of PortSentry, then
// this implementation's own.
type KeyGroup struct {
	Title string
	Intro string   // a paragraph before the keys; "" for none
	Docs  []KeyDoc // in the order shown
	After []string // paragraphs after the keys
}

// KeyDefault is the text a key takes when unset, as the parser applies
// it, and whether key exists.
func KeyDefault(key string) (string, bool) {
	k, ok := keys[key]
	return k.def, ok
}

// Documentation returns the reference of every key, by group.
func Documentation() []KeyGroup { return keyDocs }

var keyDocs = []KeyGroup{
	{
		Title: "Keys from PortSentry 1.2 and 2.x",
		Docs: []KeyDoc{
			{[]string{"TCP_PORTS"}, "port list",
				"TCP ports watched in connect (`tcp`) and stealth (`stcp`) modes."},
			{[]string{"UDP_PORTS"}, "port list",
				"UDP ports watched in connect (`udp`) and stealth (`sudp`) modes."},
			{[]string{"ADVANCED_PORTS_TCP"}, "1–65535",
				"Advanced mode (`atcp`) watches every TCP port **below** this number that no local service uses."},
			{[]string{"ADVANCED_PORTS_UDP"}, "1–65535",
				"The same for `audp`."},
			{[]string{"ADVANCED_EXCLUDE_TCP"}, "port list",
				"TCP ports never watched in advanced mode."},
			{[]string{"ADVANCED_EXCLUDE_UDP"}, "port list",
				"UDP ports never watched in advanced mode."},
			{[]string{"IGNORE_FILE"}, "path",
				"Hosts never acted on; see [Ignore files](#ignore-files)."},
			{[]string{"HISTORY_FILE"}, "path",
				"Append-only record of blocks (or events, see `HISTORY_FORMAT`). Never truncated nor rotated by portsentry (fail2ban reads it): the package's logrotate file rotates it monthly; `create` and `copytruncate` both work, as it is opened for each record. In log-only mode (`BLOCK_*=\"0\"`) a report's history line is never dropped: when a flood fills the log queue, lines that are only logging are dropped (and counted) first, and detection waits for the history rather than lose a line fail2ban would act on."},
			{[]string{"BLOCKED_FILE"}, "path",
				"Hosts already blocked: a 1.2 record appended per block, reloaded at start so that they are not acted on again (when neither `BAN_FILE` nor a native `BLOCKER` restores the bans themselves). Bounded: when a record would take it past 32 MiB the file is first moved to `BLOCKED_FILE.1` (replacing the previous copy), and both are reloaded at start, so a flood of blocks costs at most 64 MiB and the hosts blocked before the rotation are still known (together they hold more hosts than the engine remembers, 65 536). Not for logrotate."},
			{[]string{"RESOLVE_HOST"}, "`0`, `1`",
				"Reverse-resolve attackers for log lines. A reverse name is used only if forward-confirmed (its own A/AAAA records include the address), and names are never given to a shell. Names are looked up 4 at a time with at most 12 more waiting, never by the writer of the log: a source's lines wait for its name (at most `RESOLVE_TIMEOUT`) while other sources' lines go on, and when all lookups are busy (a slow name server, a flood of sources) a line shows the address. A block never waits for a name."},
			{[]string{"BLOCK_TCP"}, "`0`, `1`, `2`",
				"Response to TCP scans: `0` log only; `1` block (hosts.deny and/or `KILL_ROUTE` or the native `BLOCKER`, plus `KILL_RUN_CMD` if set); `2` run `KILL_RUN_CMD` only."},
			{[]string{"BLOCK_UDP"}, "`0`, `1`, `2`",
				"The same for UDP."},
			{[]string{"KILL_ROUTE"}, "command containing `$TARGET$`",
				"The block command (route, iptables, nft, firewall-cmd, pf…), used with `BLOCKER=\"command\"`. A line that is only a program and its arguments runs directly; anything else runs under `/bin/sh`. Only addresses, never resolved names, are put into commands."},
			{[]string{"KILL_HOSTS_DENY"}, "text containing `$TARGET$`",
				"Line appended to `HOSTS_DENY_FILE`, e.g. `ALL: $TARGET$ : DENY`, and removed when the ban ends; no duplicate lines are written. The file is rewritten atomically (a temporary file renamed over it), once for all the lines added and removed meanwhile: a flood of bans or a mass expiry costs a few rewrites, not one per line. Under the packaged systemd unit `/etc` is read-only: see portsentry(8) for the drop-in that allows it."},
			{[]string{"KILL_RUN_CMD"}, "command",
				"Run on a trigger (alerting, scripts). `$TARGET$` is optional here. A command ending in `&` is not handed to the shell to fork off: the daemon runs it (without the `&`) in its background queue, 4 at a time with up to 256 waiting, each under `COMMAND_TIMEOUT`; when the queue is full the command is refused, logged as an ERROR and counted as a failed `runcmd` step (with `BLOCK_*=\"2\"` the host is then not blocked, and its next probe tries again)."},
			{[]string{"KILL_RUN_CMD_FIRST"}, "`0`, `1`",
				"`1`: run `KILL_RUN_CMD` before blocking; `0`: after."},
			{[]string{"SCAN_TRIGGER"}, "0–1000",
				"Act when a source's hit count reaches this; `0` and `1` both act on the first hit. A hit is a distinct port (TCP and UDP apart) probed within `SCAN_TRIGGER_WINDOW`: a retransmission to a port already counted does not count again, so a trigger above the number of watched ports is never reached."},
			{[]string{"PORT_BANNER"}, "text",
				"Connect mode: written to a TCP client, sent back to a UDP sender at most once per 60 s per source address (UDP sources can be forged: this keeps the host from reflecting a flood at a victim; at most 4096 UDP sources answered a minute)."},
		},
		After: []string{
			"Tokens replaced in commands and lines: `$TARGET$` (the source address; IPv4-mapped IPv6 shown as IPv4), `$PORT$` (destination port), `$MODE$` (`tcp`, `udp`, `stcp`, `sudp`, `atcp`, `audp`, or `connect`/`stealth` with the 2.x flags).",
			"For `BLOCK_*=\"1\"` the order of actions is: `KILL_RUN_CMD` if `KILL_RUN_CMD_FIRST=\"1\"` → hosts.deny → `KILL_ROUTE` (or `KILL_ROUTE6`) → `KILL_RUN_CMD` if `KILL_RUN_CMD_FIRST=\"0\"`. A failing blocking step is logged and the host is not recorded as blocked, so its next probe tries again.",
		},
	},
	{
		Title: "Our extensions",
		Intro: "Neither 1.2 nor 2.x knows these keys; do not use them in a file that must also be read by the old programs (they would ignore or reject it).",
		Docs: []KeyDoc{
			{[]string{"KILL_ROUTE6"}, "command containing `$TARGET$`",
				"Used instead of `KILL_ROUTE` for IPv6 attackers when set. Most existing `KILL_ROUTE` commands (route, iptables) only handle IPv4; without this key IPv6 attackers go to `KILL_ROUTE`."},
			{[]string{"TCP_MODE"}, "`tcp`, `stcp`, `atcp`",
				"TCP mode, unless the command line or `/etc/default/portsentry` names one; see [Choosing modes](#choosing-modes)."},
			{[]string{"UDP_MODE"}, "`udp`, `sudp`, `audp`",
				"UDP mode, likewise."},
			{[]string{"HOSTS_DENY_FILE"}, "path",
				"Where `KILL_HOSTS_DENY` lines go (tests and chroots point it elsewhere)."},
			{[]string{"HISTORY_FORMAT"}, "`1.2`, `2.x`",
				"`1.2`: one line per block, the format fail2ban's stock `portsentry` filter reads. `2.x`: one timestamped \"Scan from\" line per triggering event, for the package's `portsentry-2x` filter."},
			{[]string{"COMMAND_TIMEOUT"}, "1–3600 (seconds)",
				"Longest a `KILL_ROUTE`/`KILL_RUN_CMD`/`UNKILL_ROUTE` command may run before it is killed (its whole process group), so a hung script cannot stall blocking; a `KILL_RUN_CMD` ending in `&` too."},
			{[]string{"RESOLVE_TIMEOUT"}, "1–60 (seconds)",
				"Longest a reverse lookup (`RESOLVE_HOST=\"1\"`) may take."},
			{[]string{"MAX_SOURCES"}, "1–10000000",
				"Cap on the number of sources tracked at once, so a flood from spoofed addresses cannot exhaust memory (the host seen least recently is forgotten first)."},
			{[]string{"SCAN_TRIGGER_WINDOW"}, "0–315360000 (seconds)",
				"How far apart the hits counted towards `SCAN_TRIGGER` may be: a port counts until the source has not probed it for this long, so probes further apart never add up. With the default a slow scan (`nmap -T1`, a probe every 15 s) is still caught, while a client's stray packets hours apart never ban it. `0`: no window, hits count for as long as the source is remembered (see `MAX_SOURCES`). With `SCAN_TRIGGER` 0 or 1 it is still the window in which a peer's forged-looking probes must reach 64 ports to ban it (`PROTECT_PEERS`)."},
			{[]string{"BLOCKER"}, "`command`, `nftables`, `iptables`, `route`, `auto`",
				"How a block is applied. `command`: run `KILL_ROUTE` (PortSentry's way). `nftables`: native, over netlink, in portsentry's own table (`inet portsentry`, hooked before the usual filter chains, so it works beside firewalld, Docker or any ruleset), with kernel-side expiry. `iptables`: a `PORTSENTRY` chain in iptables and ip6tables, changed in one `iptables-restore` batch. `route`: unreachable host routes over netlink (stops replies, not the probes). `auto`: the first of nftables, iptables, route that works here. With a native blocker `KILL_ROUTE` is not used. The table, chain or routes, and their bans, outlive the daemon (bans survive a restart); removing the package takes them out."},
			{[]string{"KERNEL_TRAP"}, "`0`, `1`",
				"With `BLOCKER` resolving to nftables, stealth or advanced mode, `BLOCK_*=\"1\"` and `SCAN_TRIGGER` 0 or 1: the kernel itself bans a scanner on its first probe to a trap port, in the packet path, before any reply. The service check (a local socket owns the port) and replies to the host's own traffic are checked in the kernel too. A probe whose source fails the reverse-path check (no route back through the interface it came in by, such as a LAN address arriving from outside) is dropped and never banned, in the kernel and by the daemon. Traceroute's probes (UDP to 33434–33534 arriving with a TTL of 30 or less) are let through, so the traceroute ends and nobody is banned. The ban sets hold at most 1 048 576 addresses per family: when full, probes are still dropped (a scanner still learns nothing) but new sources wait for room to be banned. The daemon still sees every probe; it logs and records each one, except the single probes of a flood (summarized every 10 s) and probes it finds forged (logged as `Forged probe`, not recorded in the history). While a flood is summarized the trap drops probes without banning, so the ban sets keep room for the scanners among the flood."},
			{[]string{"PROTECT_PEERS"}, "`0`, `1`",
				"With the kernel trap: a source that has an assured TCP connection with this host (in either direction: its three-way handshake completed, which cannot be done blindly from a forged address) is a *peer* for an hour after its last packet, remembered with the hop count (TTL, IPv6 hop limit) its packets arrive with. A probe that claims a peer's address but arrives with another hop count is forged as far as this host can tell: dropped, logged as `Forged probe`, counted (`action=\"forged\"`), and not banned unless such probes reach 64 distinct ports within `SCAN_TRIGGER_WINDOW` (a scan: nmap's raw probes leave with a TTL of their own, so a peer scanning with nmap looks the same). A probe from the peer's own distance is a probe like any other. At most 65 536 (address, hop count) pairs per family; beyond, new peers are not learnt until old ones expire."},
			{[]string{"BAN_FORWARD"}, "`0`, `1`",
				"With a native blocker, bans cover every way in: the traffic this host forwards as well as its own services. A banned source then also loses the containers this host publishes by DNAT (Docker's, Podman's or Kubernetes' published ports: their packets are forwarded after DNAT and never reach the input path) and the hosts it routes for. nftables drops them in a `forward` chain of its table (ban rules only: forwarded traffic is never a probe of this host, so there is no trap there, and connections to a published port ban nobody in the kernel, nor in the daemon, whose service check learns the published ports from the kernel: see `SERVICE_GRACE`); iptables jumps to its chain from `FORWARD` too; unreachable routes cover both paths by nature. A host that does not forward (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding` at 0) has no forwarded traffic, and the chain costs nothing; when forwarding is turned on later (Docker turns it on at its start, often after portsentry) it is covered at once, which is why the default is not \"when the host forwards at start\". `0`: this host's own sockets only, for a router whose transit traffic is not portsentry's business. `portsentry status` says which ways in the bans cover (`Bans cover:`), whether the host forwards, and how many packets from banned sources the forward path dropped; `portsentry selftest` says it too. Takes effect at the next start."},
			{[]string{"BAN_PREFIX6"}, "16–128",
				"With nftables, `64` makes an IPv6 ban cover the source's /64: a scanner holding a /64 can rotate through billions of addresses, and one probe then bans them all (the engine counts the /64 as one source too). The kernel trap, `portsentry list` (`2001:db8:1:2::/64`), `unblock` (any address of the prefix lifts it) and a `KILL_HOSTS_DENY` line (`[2001:db8:1:2::]/64`) all use the prefix. Sources on this host's own IPv6 networks (the subnets of its interface addresses, and link-local) are banned address by address, so a scanner on the LAN does not take its neighbours with it. Addresses on the ignore list and this host's own stay reachable through the firewall inside a banned prefix, but a `KILL_HOSTS_DENY` line for the prefix covers them. What a forger gains: a forged probe from any address of a peer's /64 bans the peer's /64 (peers are known by address), so `PROTECT_PEERS` no longer protects IPv6 peers off this host's networks; that is why the default is `128`, single addresses. Other blockers ban single addresses. Changing it takes a restart."},
			{[]string{"SERVICE_GRACE"}, "0–604800 (seconds)",
				"A port where a local socket received a new connection or datagram (kernel trap) or was found by the service check (daemon) stays a service's port for this long after the socket is gone: a client reconnecting while the service restarts, crashes or is deployed, or a monitor checking a service that is down, has its packets dropped (a TCP client's retransmission finds the service back) and is never banned. A scanner learns nothing there either. The kernel's memory of these ports outlives a restart of the daemon, which reads it whenever no socket owns a probed port, so both keep judging them alike. With the nftables blocker a port the kernel publishes by DNAT (Docker with `\"userland-proxy\": false`, Podman's netavark, Kubernetes NodePorts, a `redirect`) counts as served too: no local socket owns it, but the kernel records each port it DNATs a new connection or datagram to (the port the client asked for), for this long with the kernel trap (at least a minute), for a minute without it; the daemon's service check reads that record when no socket owns a probed port, so a published container's clients are never taken for scanners, even the first one, and a client reconnecting while the container restarts (its DNAT gone) is dropped by the trap, not banned. With iptables, routes or `command` nothing records them: exclude published ports with `ADVANCED_EXCLUDE_TCP`/`ADVANCED_EXCLUDE_UDP` (or keep Docker's userland proxy, whose socket the service check finds). `0`: a port is a service's only while a socket holds it, or while the kernel DNATs it (the last minute)."},
			{[]string{"PROTECT_INFRASTRUCTURE"}, "`0`, `1`",
				"Never block this host's infrastructure, whatever probes claim to come from it: the name servers of `/etc/resolv.conf`, the gateways of the default routes (IPv4 and IPv6), and the remote addresses of logged-in users (utmp, as `who` shows them), so the session of an administrator who installs or restarts portsentry is safe from the first start. Read before the first trap is set, then every 30 s and at reload; added to the kernel's never-ban list; listed by `portsentry status`. A forged probe from one of them is logged as ignored."},
			{[]string{"BAN_TIME"}, "0–315360000 (seconds)",
				"How long a ban lasts; `0` is permanent, as in PortSentry."},
			{[]string{"BAN_TIME_MAX"}, "0–315360000 (seconds)",
				"Repeat offenders: each new ban of the same address lasts twice the previous one, up to this (`0`: no cap below ten years)."},
			{[]string{"UNKILL_ROUTE", "UNKILL_ROUTE6"}, "command containing `$TARGET$`",
				"Lifts a `KILL_ROUTE` (`KILL_ROUTE6`) ban when it expires or is removed with `portsentry unblock` (e.g. `/usr/sbin/iptables -D INPUT -s $TARGET$ -j DROP`). Native blockers need none. A hosts.deny line is removed by the daemon itself. Run in the background queue (as a `KILL_RUN_CMD` ending in `&`): a mass expiry runs at most 4 at a time, and a command that finds the queue full is refused and logged as an ERROR."},
			{[]string{"BAN_FILE"}, "path",
				"Where bans and their remaining time are kept, so that they survive a restart, a crash and a reboot (restored in one batch at start). Without it bans live in memory and in the firewall only. A journal, compacted as it grows, written after each batch of bans and every second, outside the lock that detection and blocking consult, so a slow or failing disk does not hold them up. After a write error (a full disk) the file is rewritten whole from memory at once, then no sooner than 1 s, 2 s, 4 s … up to every 5 minutes while that fails; the failure is logged once, not at every attempt, and the bans hold in the firewall meanwhile."},
			{[]string{"CONTROL_SOCKET"}, "path",
				"The local socket of `portsentry list`, `block`, `unblock` and `status` (root only). `\"\"` turns it off. With a native blocker, `unblock` also lifts bans only the kernel's sets hold (a kernel-trap ban whose event the daemon lost under a flood); its reply gives them the reason `kernel only`."},
			{[]string{"FLEET_URL"}, "URLs",
				"One or more `nats://HOST:PORT` (or `tls://`) URLs, separated by commas or spaces: joins a fleet of portsentry daemons that share their bans over NATS JetStream (servers 2.9 or later). Each member publishes the bans it decided on its own evidence and by hand, and the operator's unblocks; it applies the others' through its own blocker with their remaining lifetime, after its own policy (never its ignore list, its own addresses, its infrastructure or its peers), shown as `fleet:NAME` by `portsentry list`. Needs a native `BLOCKER`. The daemon never waits for the fleet: with the servers unreachable detection and local bans go on, and the bans to share wait (at most 10 000, the oldest dropped beyond). `portsentry status` shows the connection, members seen, lag and bans in and out."},
			{[]string{"FLEET_LISTEN"}, "host:port",
				"Runs an embedded NATS server with JetStream (its data in `FLEET_STORE`) on this address, so two or three servers need nothing installed. Alone (no `FLEET_URL`) the member joins its own server; it always talks to its own server first."},
			{[]string{"FLEET_CLUSTER"}, "host:port",
				"With `FLEET_LISTEN`: the embedded server's cluster address, to which the other members' servers connect."},
			{[]string{"FLEET_ROUTES"}, "host:port list",
				"With `FLEET_CLUSTER`: the other members' `FLEET_CLUSTER` addresses, separated by commas or spaces. Three servers clustered keep the fleet's bans in three copies and work with one of them down."},
			{[]string{"FLEET_STORE"}, "path",
				"The embedded server's JetStream directory."},
			{[]string{"FLEET_NAME"}, "name",
				"This member's name, 1 to 64 letters, digits, `-` or `_`; unset: the host name (other characters as `-`). Bans from it are `fleet:NAME` on the others. Must be unique in the fleet."},
			{[]string{"FLEET_TOKEN"}, "text",
				"The fleet's shared secret: the embedded server requires it of every client and route, and the member presents it. A client without it can neither read nor publish bans. Keep the file mode 0600."},
			{[]string{"FLEET_CREDS"}, "path",
				"A NATS credentials file, for an existing cluster with a user per member: allow each to publish only under `portsentry.fleet.ban.NAME.>`, and a member can speak only for itself."},
			{[]string{"FLEET_TLS_CA", "FLEET_TLS_CERT", "FLEET_TLS_KEY"}, "path",
				"PEM files: TLS to the servers (verified against `FLEET_TLS_CA`) and, with `FLEET_LISTEN`, on the embedded server's client and cluster ports, which then require a client certificate signed by `FLEET_TLS_CA`."},
			{[]string{"FLEET_MAX_BAN_TIME"}, "60–315360000 (seconds)",
				"The longest ban accepted from the fleet, counted from when its member published it (the NATS server's time): a permanent ban on its member lasts this long here. The member that creates the fleet's stream also makes it the stream's age limit."},
			{[]string{"FLEET_MAX_RATE"}, "1–1000000",
				"Bans and lifts a second accepted from one member, with a burst of as many; beyond, that member's are dropped here, counted and logged once a minute, so one compromised member cannot ban the world. Judged by the NATS server's time of each message, so a member catching up judges the stream as it was live."},
			{[]string{"METRICS_ADDRESS"}, "host:port",
				"Serves Prometheus metrics on `http://ADDRESS/metrics`; bind it to `127.0.0.1` (the metrics tell who scanned the host). The port is required (`localhost` alone is an error; `0` lets the kernel choose); an address on every interface (`:9617`, `0.0.0.0:9617`, `[::]:9617`) is a warning. Names and labels: `/usr/share/doc/portsentry/metrics.md.gz` in the package, `internal/report/metrics/README.md` in the source."},
			{[]string{"EVENT_LOG"}, "path, or `-` for standard output",
				"One JSON object per probe (a service's own traffic is counted in the metrics, not written here; a flood's single probes are summed up in the log) (time, src, dst, port, proto, kind, type, mode, ip_opts, action, hits, host, blocker, ban_expires, ban_count, origin, hostname, version; a ban from the fleet or CrowdSec is a line with action `imported`), for a SIEM. A file rotates itself: when a line would take it past 64 MiB it is first moved to `EVENT_LOG.1` (replacing the previous copy), so a flood from random sources, one line each, costs at most 128 MiB. The file is opened for each line with `O_APPEND`, so a shipper that renames or truncates it is followed too. Under the packaged systemd unit only `/var/log/portsentry` is writable for it (`LogsDirectory=`): `EVENT_LOG=\"/var/log/portsentry/events.jsonl\"`. A file the daemon cannot write there (its directory read-only, under the unit too, or a directory given as the file) is an error of `portsentry check` and at start, as for `HISTORY_FILE`, `BLOCKED_FILE` and `BAN_FILE`."},
			{[]string{"ALERT_MAILER"}, "`sendmail`, `smtp`",
				"E-mail alerts, through the local `ALERT_SENDMAIL` program (run as `sendmail -t -i`, without a shell) or straight to `ALERT_SMTP_SERVER`. Unset: no e-mail. The `ALERT_*` keys are checked together, at start and by `portsentry check`; each mistake is named by its key and line (a missing `ALERT_EMAIL_TO` at the line of `ALERT_MAILER`)."},
			{[]string{"ALERT_EMAIL_TO"}, "addresses",
				"Recipients of e-mail alerts, comma-separated."},
			{[]string{"ALERT_EMAIL_FROM"}, "address",
				"Sender of e-mail alerts."},
			{[]string{"ALERT_SENDMAIL"}, "path",
				"The sendmail program of `ALERT_MAILER=\"sendmail\"`."},
			{[]string{"ALERT_SMTP_SERVER"}, "host:port",
				"The server of `ALERT_MAILER=\"smtp\"`."},
			{[]string{"ALERT_SMTP_USER", "ALERT_SMTP_PASSWORD"}, "text",
				"SMTP AUTH PLAIN credentials, sent only over TLS or to a loopback server. Keep the file mode 0600 when it holds a password: a password (or a webhook token or URL) in a file every user can read is a warning."},
			{[]string{"ALERT_SMTP_STARTTLS"}, "`0`, `1`",
				"`1`: the SMTP connection is upgraded with STARTTLS after the greeting (a server that does not offer it fails the alert), before any credentials or mail are sent."},
			{[]string{"ALERT_WEBHOOK_URL"}, "URL",
				"A JSON POST per alert (Slack and Mattermost show its `text`); only over https or to loopback, redirects not followed. The URL is never logged: it is often the hook's secret."},
			{[]string{"ALERT_WEBHOOK_TOKEN"}, "text",
				"Sent as `Authorization: Bearer TOKEN` with each webhook POST. Keep the file mode 0600 when it holds a token."},
			{[]string{"ALERT_DELAY"}, "1–3600 (seconds)",
				"Probes from one attacker are gathered for this long, then sent as one alert, so a 65 535-port scan is one alert, not thousands. A failing or slow destination never delays detection."},
			{[]string{"ALERT_WINDOW"}, "1–86400 (seconds)",
				"After an alert about a source, what it does next is gathered for this long into one summary."},
			{[]string{"ALERT_MAX_PER_HOUR"}, "1–100000",
				"Most alert messages sent in an hour, for all sources together; the next one sent tells how many were held back."},
			{[]string{"CROWDSEC_URL"}, "URL",
				"A CrowdSec Local API (e.g. `http://127.0.0.1:8080/`); plain `http` only to a loopback address, `https` otherwise (the password and key would cross the network in clear). With machine credentials each ban the daemon makes after a detection is pushed as an alert with its ban decision (scenario `portsentry/scan`, origin `crowdsec`, the ban's time left; a permanent ban for a year), so `cscli decisions list` shows it and every bouncer of that Local API enforces it. With a bouncer key CrowdSec's ban decisions on addresses (scope `Ip`) are enforced here with the native blocker for the decision's time left (capped by `BAN_TIME_MAX` when set), recorded with origin `crowdsec` (`portsentry list` shows an ORIGIN column), and lifted when their decisions are deleted or expire; no hosts.deny line, command, history or blocked-file record comes of them. An address on the ignore list, this host's own, its infrastructure or a peer (`PROTECT_PEERS`: a host with an established connection in the last hour, which includes a brute-forcer that completed handshakes) is never banned on CrowdSec's word. The Local API is reached only after start-up; while it is away detection and local blocking go on, pushes wait (at most 4 096 bans, the oldest dropped first; retried after 1 s, doubling up to 5 min) and pulls are retried every `CROWDSEC_POLL`; each request times out after 10 s. Read at start only. See `internal/crowdsec/README.md`."},
			{[]string{"CROWDSEC_MACHINE_ID", "CROWDSEC_MACHINE_PASSWORD"}, "text",
				"The machine that pushes bans (`cscli machines add portsentry --password …`). Both or neither. Keep the file mode 0600."},
			{[]string{"CROWDSEC_CREDENTIALS"}, "path",
				"Instead of the two keys above: the file `cscli machines add portsentry -a -f FILE` writes (`url`, `login`, `password`); its `url` serves when `CROWDSEC_URL` is not set. Keep it mode 0600."},
			{[]string{"CROWDSEC_BOUNCER_KEY"}, "text",
				"The bouncer key that enforces CrowdSec's decisions here (`cscli bouncers add portsentry`). Needs a native blocker (`BLOCKER` other than `command`). Keep the file mode 0600."},
			{[]string{"CROWDSEC_POLL"}, "1–3600 (seconds)",
				"How often the bouncer asks the Local API for new and deleted decisions (stream mode): a decision is enforced here within this time."},
		},
	},
}
