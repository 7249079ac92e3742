// Package config reads portsentry.conf (PortSentry 1.2 and 2.x files load
// unchanged) and Debian's /etc/default/portsentry.
//
// It is stricter than either peer where their leniency hid mistakes: keys
// match exactly (2.x matched by prefix, so `B="1"` set BLOCK_TCP), unknown
// keys are errors (1.2 ignored typos), bad port-list items are errors (2.x
// skipped them), and every error names the file, the line and the key (2.x
// named only the line). It is more lenient where leniency is harmless:
// `KEY=""` means "use the default" (2.x made it fatal), CRLF line ends and
// unquoted values are accepted.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/portset"
)

// BlockMode is the response chosen by BLOCK_TCP and BLOCK_UDP.
type BlockMode int

// Values of BLOCK_TCP and BLOCK_UDP, numbered as PortSentry numbers them so
// that a BlockMode converts to and from the file's digit directly.
const (
	// LogOnly (0) logs the event and does nothing else.
	LogOnly BlockMode = 0
	// Block (1) writes KILL_HOSTS_DENY, runs KILL_ROUTE, and runs
	// KILL_RUN_CMD when it is set.
	Block BlockMode = 1
	// RunCmdOnly (2) runs KILL_RUN_CMD and blocks nothing.
	RunCmdOnly BlockMode = 2
)

// String returns a short English name, for logs and diagnostics.
func (m BlockMode) String() string {
	switch m {
	case LogOnly:
		return "log only"
	case Block:
		return "block"
	case RunCmdOnly:
		return "run KILL_RUN_CMD only"
	}
	return fmt.Sprintf("BlockMode(%d)", int(m))
}

// HistoryFormat selects the line format written to HISTORY_FILE.
type HistoryFormat int

const (
	// History12 is PortSentry 1.2's one line per block, the format
	// fail2ban's stock "portsentry" filter reads. It is the default because
	// that filter is what existing installations rely on.
	History12 HistoryFormat = iota
	// History2x is PortSentry 2.x's one timestamped "Scan from" line per
	// event.
	History2x
)

// String returns the value as written in HISTORY_FORMAT: "1.2" or "2.x".
func (h HistoryFormat) String() string {
	switch h {
	case History12:
		return "1.2"
	case History2x:
		return "2.x"
	}
	return fmt.Sprintf("HistoryFormat(%d)", int(h))
}

// Config is a loaded portsentry.conf. Fields hold validated values; a zero
// string means the feature is off.
type Config struct {
	// Path is the file the configuration came from ("" for Default()).
	Path string

	// TCPPorts and UDPPorts (TCP_PORTS, UDP_PORTS) are watched in connect
	// and stealth modes. Default: empty.
	TCPPorts, UDPPorts portset.Set

	// AdvancedPortsTCP and AdvancedPortsUDP (ADVANCED_PORTS_TCP/UDP,
	// 1-65535, default 1024): advanced mode watches every port below them.
	AdvancedPortsTCP, AdvancedPortsUDP int

	// AdvancedExcludeTCP and AdvancedExcludeUDP (ADVANCED_EXCLUDE_TCP/UDP)
	// are never watched in advanced mode. Defaults are 1.2's: "113,139" and
	// "520,138,137,67" (ident, NetBIOS, RIP, DHCP: chatty, not scans).
	AdvancedExcludeTCP, AdvancedExcludeUDP portset.Set

	// IgnoreFile, HistoryFile and BlockedFile (IGNORE_FILE, HISTORY_FILE,
	// BLOCKED_FILE) are paths, "" for none. A relative path is resolved
	// against the directory of the config file, not the daemon's working
	// directory, so a config and its files can be moved together.
	IgnoreFile, HistoryFile, BlockedFile string

	// ResolveHost (RESOLVE_HOST 0/1) reverse-resolves attackers for logs.
	ResolveHost bool

	// BlockTCP and BlockUDP (BLOCK_TCP, BLOCK_UDP) choose the response.
	BlockTCP, BlockUDP BlockMode

	// KillRoute (KILL_ROUTE) is the block command; it contains $TARGET$.
	KillRoute string
	// KillRoute6 (KILL_ROUTE6, our extension) is used instead of KillRoute
	// for IPv6 targets when set, because most KILL_ROUTE commands in the
	// wild (route, iptables) only understand IPv4. It contains $TARGET$.
	KillRoute6 string
	// KillHostsDeny (KILL_HOSTS_DENY) is the line appended to
	// HostsDenyFile; it contains $TARGET$.
	KillHostsDeny string
	// KillRunCmd (KILL_RUN_CMD) runs on a trigger. It need not mention
	// $TARGET$: alerting scripts often do not care who it was.
	KillRunCmd string
	// KillRunCmdFirst (KILL_RUN_CMD_FIRST 0/1) runs KillRunCmd before
	// blocking rather than after.
	KillRunCmdFirst bool

	// ScanTrigger (SCAN_TRIGGER, 0..1000, default 0): act when a
	// source's hit count reaches it (0 and 1 both act on the first hit). A
	// hit is a distinct (protocol, port) pair within ScanTriggerWindow.
	ScanTrigger int
	// ScanTriggerWindow (SCAN_TRIGGER_WINDOW seconds, 0..315360000, our
	// extension, default 3600): hits further apart than this do not add
	// up towards ScanTrigger; 0 counts them for as long as the source is
	// remembered.
	ScanTriggerWindow time.Duration

	// PortBanner (PORT_BANNER) is sent to connect-mode clients.
	PortBanner string

	// TCPMode and UDPMode (TCP_MODE: "tcp", "stcp", "atcp"; UDP_MODE:
	// "udp", "sudp", "audp"; "" when not chosen here) select the modes.
	// They are what Debian keeps in /etc/default/portsentry; allowing them
	// in portsentry.conf lets one file describe the whole setup.
	TCPMode, UDPMode string

	// HostsDenyFile (HOSTS_DENY_FILE, our extension, default
	// "/etc/hosts.deny") is where KillHostsDeny lines go; tests and
	// chroots point it elsewhere.
	HostsDenyFile string
	// HistoryFormat (HISTORY_FORMAT "1.2" or "2.x", our extension).
	HistoryFormat HistoryFormat
	// CommandTimeout (COMMAND_TIMEOUT seconds, 1..3600, default 30) bounds
	// KILL_ROUTE and KILL_RUN_CMD so a hung script cannot stall blocking.
	CommandTimeout time.Duration
	// ResolveTimeout (RESOLVE_TIMEOUT seconds, 1..60, default 2) bounds a
	// reverse lookup, which must never delay a block.
	ResolveTimeout time.Duration
	// MaxSources (MAX_SOURCES, 1..10000000, default 65536) caps the
	// engine's per-source table so a spoofed-source flood cannot exhaust
	// memory.
	MaxSources int

	// Blocker (BLOCKER) is how bans are applied: "command" (KILL_ROUTE and
	// KILL_ROUTE6, PortSentry's way and the default), "nftables",
	// "iptables", "route" (native, no subprocess for nftables and route),
	// or "auto" (the first of nftables, iptables, route that works).
	Blocker string
	// KernelTrap (KERNEL_TRAP, default 1) lets the nftables blocker ban a
	// scanner in the kernel's packet path on its first probe, in stealth
	// and advanced modes when SCAN_TRIGGER is 0 or 1.
	KernelTrap bool
	// ProtectInfrastructure (PROTECT_INFRASTRUCTURE, default 1) never
	// blocks the name servers of /etc/resolv.conf, the default gateways and
	// the addresses administrators are logged in from, whatever probes
	// claim to come from them.
	ProtectInfrastructure bool
	// ProtectPeers (PROTECT_PEERS, default 1) makes the kernel trap learn
	// peers (sources of an established TCP connection, with the hop count
	// their packets arrive with) and spare them from probes that claim
	// their address from another distance (nftables trap only).
	ProtectPeers bool
	// ServiceGrace (SERVICE_GRACE seconds, default 3600, 0 = none) keeps a
	// port whose local socket went away within it out of the trap and
	// the service check, so a restarting service's clients are not
	// banned.
	ServiceGrace time.Duration
	// BanPrefix6 (BAN_PREFIX6, default 128: single addresses) is the IPv6
	// prefix one ban covers with nftables; 64 keeps a scanner from
	// rotating through its /64.
	BanPrefix6 int
	// BanForward (BAN_FORWARD, default 1) makes native bans cover the
	// traffic this host forwards too (containers published by DNAT,
	// routed hosts), not only its own sockets.
	BanForward bool
	// BanTime (BAN_TIME seconds, 0 = permanent, the default as in
	// PortSentry) is how long a first ban lasts; each repeat doubles it, up
	// to BanTimeMax (BAN_TIME_MAX seconds; 0 = no cap below ten years).
	BanTime, BanTimeMax time.Duration
	// UnkillRoute (UNKILL_ROUTE, and UNKILL_ROUTE6 for IPv6) lifts a ban
	// made by KILL_ROUTE when it expires or is removed by hand.
	UnkillRoute, UnkillRoute6 string
	// BanFile (BAN_FILE) keeps bans and their remaining time across
	// restarts, crashes and reboots; "" keeps them in memory only.
	BanFile string
	// ControlSocket (CONTROL_SOCKET) is the local socket of the operator
	// commands; "" turns it off.
	ControlSocket string

	// The fleet (FLEET_*; docs/configuration.md, package fleet): bans
	// shared with other portsentry daemons over NATS JetStream. FleetURL
	// lists the servers; FleetListen runs an embedded one (JetStream data
	// in FleetStore), clustered on FleetCluster with FleetRoutes;
	// FleetName is this member (default: the host name); FleetToken or
	// FleetCreds authenticate, FleetTLS* encrypt; FleetMaxBanTime caps
	// the bans accepted, FleetMaxRate the bans a second accepted from one
	// member.
	FleetURL, FleetRoutes                 []string
	FleetListen, FleetCluster, FleetStore string
	FleetName, FleetToken, FleetCreds     string
	FleetTLSCA, FleetTLSCert, FleetTLSKey string
	FleetMaxBanTime                       time.Duration
	FleetMaxRate                          int

	// MetricsAddress (METRICS_ADDRESS, e.g. "127.0.0.1:9617") serves
	// Prometheus metrics on /metrics; "" (the default) serves none.
	MetricsAddress string
	// EventLog (EVENT_LOG) is a JSON-lines stream of every event: a file,
	// or "-" for standard output; "" writes none.
	EventLog string
	// Alerts to administrators (ALERT_*): e-mail through sendmail or an
	// SMTP server, and/or a webhook; batched per attacker.
	AlertMailer, AlertEmailTo, AlertEmailFrom, AlertSendmail string
	AlertSMTPServer, AlertSMTPUser, AlertSMTPPassword        string
	AlertSMTPStartTLS                                        bool
	AlertWebhookURL, AlertWebhookToken                       string
	AlertDelay, AlertWindow                                  time.Duration
	AlertMaxPerHour                                          int

	// CrowdSec (CROWDSEC_*): a Local API to push bans to as a machine
	// (CROWDSEC_MACHINE_ID and CROWDSEC_MACHINE_PASSWORD, or a cscli
	// credentials file, CROWDSEC_CREDENTIALS) and to follow decisions
	// from as a bouncer (CROWDSEC_BOUNCER_KEY), every CROWDSEC_POLL
	// (seconds, 1..3600, default 10). Checked together by package
	// settings.
	CrowdSecURL, CrowdSecMachineID, CrowdSecMachinePassword string
	CrowdSecCredentials, CrowdSecBouncerKey                 string
	CrowdSecPoll                                            time.Duration

	// Warnings are lines that loaded but probably do not say what was
	// meant, each naming file, line and key.
	Warnings []string

	// Lines holds, for each key the file sets, the line that set it last,
	// so that checks made after parsing (settings, alerts, files) can name
	// the line too.
	Lines map[string]int
}

// Line returns the line that set key last, 0 when the file does not set it.
func (c *Config) Line(key string) int { return c.Lines[key] }

// ErrorAt returns an *Error about key at the line that set it (no line
// when the file does not set it): for problems found after parsing.
func (c *Config) ErrorAt(key string, err error) *Error {
	return &Error{File: c.Path, Line: c.Line(key), Key: key, Err: err}
}

// Default returns the configuration used for every key the file does not
// set (or sets to ""). A fresh value each call, so callers may modify it.
func Default() *Config {
	c := &Config{
		AdvancedPortsTCP:      1024,
		AdvancedPortsUDP:      1024,
		HostsDenyFile:         "/etc/hosts.deny",
		CommandTimeout:        30 * time.Second,
		ResolveTimeout:        2 * time.Second,
		MaxSources:            65536,
		ScanTriggerWindow:     time.Hour,
		Blocker:               "command",
		KernelTrap:            true,
		ProtectInfrastructure: true,
		ProtectPeers:          true,
		ServiceGrace:          time.Hour,
		BanPrefix6:            128,
		BanForward:            true,
		ControlSocket:         DefaultControlSocket,
		FleetStore:            DefaultFleetStore,
		FleetMaxBanTime:       24 * time.Hour,
		FleetMaxRate:          100,
		AlertSendmail:         "/usr/sbin/sendmail",
		AlertDelay:            5 * time.Second,
		AlertWindow:           time.Minute,
		AlertMaxPerHour:       60,
		CrowdSecPoll:          10 * time.Second,
	}
	// These literals are known good; a failure here is a programming error
	// caught by TestDefault, so the errors are deliberately dropped.
	c.AdvancedExcludeTCP, _ = portset.Parse(defaultExcludeTCP)
	c.AdvancedExcludeUDP, _ = portset.Parse(defaultExcludeUDP)
	return c
}

// PortSentry 1.2's advanced-mode exclusions.
const (
	defaultExcludeTCP = "113,139"
	defaultExcludeUDP = "520,138,137,67"
)

// Error is a problem at one line of a configuration file. Every error
// returned by Load, Parse and ApplyDefaultsFile is an *Error. The state
// files' readers (packages bans and history) name their unreadable lines
// with it too, as "FILE:LINE: problem".
type Error struct {
	// File is the name of the file (Config.Path).
	File string
	// Line is the 1-based line number, 0 when the error is not about a
	// line (the file could not be read).
	Line int
	// Key is the known key the line sets, "" when the line names none
	// (syntax errors, unknown keys).
	Key string
	// Err is the cause: ErrSyntax, ErrInvalidValue, *UnknownKeyError or an
	// I/O error, possibly wrapping a *portset.ParseError.
	Err error
}

// Error returns "FILE:LINE: KEY: message", leaving out the parts that are
// not known, so editors and humans can jump to the spot.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Sentinel causes, for callers that branch on the kind of mistake.
var (
	// ErrSyntax: the line is not KEY="value" (no "=", no key, no closing
	// quote).
	ErrSyntax = errors.New("syntax error")
	// ErrInvalidValue: the key is known but its value is not acceptable.
	ErrInvalidValue = errors.New("invalid value")
)

// UnknownKeyError reports a key that is not a configuration key, with the
// keys the user probably meant.
type UnknownKeyError struct {
	// Key is the key as written.
	Key string
	// Suggestions are known keys close to Key, best first; may be empty.
	Suggestions []string
	// Allowed, when not nil, is the full list of keys the file may contain
	// (used for /etc/default/portsentry, which allows only two).
	Allowed []string
}

// Error returns e.g. `unknown key "BLOK_TCP" (did you mean BLOCK_TCP?)`.
func (e *UnknownKeyError) Error() string {
	msg := fmt.Sprintf("unknown key %q", e.Key)
	switch {
	case e.Allowed != nil:
		msg += " (only " + orList(e.Allowed, "and") + " are allowed here)"
	case len(e.Suggestions) > 0:
		msg += " (did you mean " + orList(e.Suggestions, "or") + "?)"
	}
	return msg
}

// orList joins words as "A", "A or B", "A, B or C".
func orList(words []string, conj string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " " + conj + " " + words[len(words)-1]
}

// Load reads the configuration file at path over Default(). Beyond Parse,
// it refuses a path that is not a regular file (a directory would
// otherwise fail as a read error at line 1), and warns when a secret
// (ALERT_SMTP_PASSWORD, ALERT_WEBHOOK_TOKEN, ALERT_WEBHOOK_URL) is in a
// file every local user can read.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return nil, &Error{File: path, Err: notAFile(fi)}
	}
	c, err := Parse(f, path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		for _, k := range secretKeys {
			if c.Line(k) > 0 && c.secret(k) != "" {
				c.Warnings = append(c.Warnings, c.ErrorAt(k, fmt.Errorf(
					"holds a secret, but %s is readable by every user (mode %04o): chmod o-r %s", path, fi.Mode().Perm(), path)).Error())
			}
		}
	}
	return c, nil
}

// secretKeys are the keys whose values let someone who reads them act as
// this host: a mail password, a webhook's token, and a webhook's URL
// (for most chat services the URL is the only credential).
var secretKeys = []string{"ALERT_SMTP_PASSWORD", "ALERT_WEBHOOK_TOKEN", "ALERT_WEBHOOK_URL"}

func (c *Config) secret(key string) string {
	switch key {
	case "ALERT_SMTP_PASSWORD":
		return c.AlertSMTPPassword
	case "ALERT_WEBHOOK_TOKEN":
		return c.AlertWebhookToken
	case "ALERT_WEBHOOK_URL":
		return c.AlertWebhookURL
	}
	return ""
}

// notAFile says what a path that should be a regular file is instead.
func notAFile(fi os.FileInfo) error {
	if fi.IsDir() {
		return errors.New("is a directory, not a file")
	}
	return fmt.Errorf("is not a regular file (%s)", fi.Mode().Type())
}

// Parse reads a configuration from r over Default(). name is used in errors
// and as Config.Path; relative paths in the file are resolved against
// filepath.Dir(name). The first bad line stops parsing: a daemon must not
// start half-configured.
func Parse(r io.Reader, name string) (*Config, error) {
	c := Default()
	c.Path = name
	c.Lines = map[string]int{}
	dir := filepath.Dir(name)
	err := scan(r, name, false, func(ln line) error {
		k, ok := keys[ln.key]
		if !ok {
			return &Error{File: name, Line: ln.num, Err: unknownKey(ln.key)}
		}
		c.Lines[ln.key] = ln.num
		if ln.value == "" {
			// `KEY=""` restores the default, which lets a packaged file
			// list every key without committing to a value.
			k.set(c, k.def, dir)
			return nil
		}
		if err := k.set(c, ln.value, dir); err != nil {
			return &Error{File: name, Line: ln.num, Key: ln.key, Err: err}
		}
		if ln.trailing != "" {
			c.Warnings = append(c.Warnings, (&Error{File: name, Line: ln.num, Key: ln.key,
				Err: fmt.Errorf("text after the closing quote is ignored: %q (the value is %q)", ln.trailing, ln.value)}).Error())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.lint()
	return c, nil
}

// lint adds the warnings about values that load but are risky.
func (c *Config) lint() {
	if host, _, err := net.SplitHostPort(c.MetricsAddress); err == nil && allInterfaces(host) {
		c.Warnings = append(c.Warnings, c.ErrorAt("METRICS_ADDRESS", fmt.Errorf(
			"%q listens on every interface: whoever reaches this host can read the metrics (what is watched, how many bans); give 127.0.0.1:PORT or a management address", c.MetricsAddress)).Error())
	}
}

// allInterfaces reports whether a listener's host means every interface.
func allInterfaces(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// ApplyDefaultsFile reads Debian's /etc/default/portsentry (TCP_MODE and
// UDP_MODE, same syntax as portsentry.conf, shell comments and single
// quotes allowed) and fills in c.TCPMode and c.UDPMode where portsentry.conf
// left them empty. The precedence is flags > portsentry.conf > this file >
// built-in (connect mode), so a value here never overrides one from
// portsentry.conf, and an empty value here changes nothing. A missing file
// is not an error: only Debian ships one.
func (c *Config) ApplyDefaultsFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &Error{File: path, Err: err}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return &Error{File: path, Err: err}
	} else if !fi.Mode().IsRegular() {
		return &Error{File: path, Err: notAFile(fi)}
	}
	var tcp, udp string
	err = scan(f, path, true, func(ln line) error {
		var dst *string
		switch ln.key {
		case "TCP_MODE":
			dst = &tcp
		case "UDP_MODE":
			dst = &udp
		default:
			return &Error{File: path, Line: ln.num, Err: &UnknownKeyError{
				Key: ln.key, Allowed: []string{"TCP_MODE", "UDP_MODE"}}}
		}
		if err := keys[ln.key].set(&Config{}, ln.value, ""); err != nil {
			return &Error{File: path, Line: ln.num, Key: ln.key, Err: err}
		}
		*dst = ln.value // last one wins, as when the shell sources it
		return nil
	})
	if err != nil {
		return err
	}
	if c.TCPMode == "" {
		c.TCPMode = tcp
	}
	if c.UDPMode == "" {
		c.UDPMode = udp
	}
	return nil
}

// line is one KEY=value assignment found by scan.
type line struct {
	num   int
	key   string
	value string
	// trailing is what followed the closing quote, if it is not blank or a
	// comment: ignored, as 1.2 and 2.x ignore it, but worth a warning
	// (KILL_ROUTE="echo "x"" runs `echo `).
	trailing string
}

// scan splits r into assignments and calls fn for each. shell allows
// single-quoted values, as in a file meant to be sourced by sh.
func scan(r io.Reader, name string, shell bool, fn func(line) error) error {
	br := bufio.NewReader(r)
	for num := 1; ; num++ {
		text, rerr := br.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return &Error{File: name, Line: num, Err: rerr}
		}
		if text == "" && rerr == io.EOF {
			return nil
		}
		if num == 1 {
			// A UTF-8 byte-order mark, left by some Windows editors.
			text = strings.TrimPrefix(text, "\ufeff")
		}
		ln, ok, err := parseLine(text, shell)
		if err != nil {
			e := &Error{File: name, Line: num, Err: err}
			if _, known := keys[ln.key]; known {
				e.Key = ln.key
			}
			return e
		}
		if ok {
			ln.num = num
			if err := fn(ln); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
	}
}

// blanks are the characters allowed around keys and "=": the files are
// written by hand, and Debian's has `RESOLVE_HOST = "0"`.
const blanks = " \t"

// parseLine parses one line. ok is false for blank and comment lines. On
// error, ln.key holds the key when one could be made out, so that the error
// can name it.
func parseLine(text string, shell bool) (ln line, ok bool, err error) {
	text = strings.TrimRight(text, "\r\n")
	text = strings.TrimLeft(text, blanks)
	if text == "" || text[0] == '#' {
		return line{}, false, nil
	}
	k, v, found := strings.Cut(text, "=")
	if !found {
		first, _, _ := strings.Cut(text, " ")
		first, _, _ = strings.Cut(first, "\t")
		return line{key: first}, false, fmt.Errorf(`%w: no "=" on the line (want KEY="value")`, ErrSyntax)
	}
	ln.key = strings.TrimRight(k, blanks)
	if ln.key == "" {
		return ln, false, fmt.Errorf(`%w: no key before "="`, ErrSyntax)
	}
	v = strings.TrimLeft(v, blanks)
	switch {
	case strings.HasPrefix(v, `"`), shell && strings.HasPrefix(v, `'`):
		// The value runs to the next quote of the same kind, with no
		// escapes; whatever follows is ignored, as in 1.2 and 2.x.
		q := v[:1]
		end := strings.Index(v[1:], q)
		if end < 0 {
			return ln, false, fmt.Errorf("%w: missing closing %s", ErrSyntax, q)
		}
		ln.value = v[1 : 1+end]
		if rest := strings.Trim(v[2+end:], blanks); rest != "" && rest[0] != '#' {
			ln.trailing = rest
		}
	default:
		// Unquoted: ends at a blank or "#". Text after the blank that is
		// not a comment is refused rather than dropped: `KILL_ROUTE=/sbin/
		// route add ...` unquoted would otherwise run a different command.
		end := strings.IndexAny(v, " \t#")
		if end < 0 {
			end = len(v)
		}
		ln.value = v[:end]
		rest := strings.TrimLeft(v[end:], blanks)
		if rest != "" && rest[0] != '#' {
			return ln, false, fmt.Errorf(`%w: unquoted value contains blanks (write KEY="value")`, ErrSyntax)
		}
	}
	return ln, true, nil
}
