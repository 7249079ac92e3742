package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/portset"
)

// key describes one configuration key: how to store a value and what text
// restores its default (used for `KEY=""`).
type key struct {
	def string
	set func(c *Config, v, dir string) error
}

// keys is every key portsentry.conf may contain, matched exactly.
var keys = map[string]key{
	// PortSentry 1.2 and 2.x.
	"TCP_PORTS":            {"", portsKey(func(c *Config) *portset.Set { return &c.TCPPorts })},
	"UDP_PORTS":            {"", portsKey(func(c *Config) *portset.Set { return &c.UDPPorts })},
	"ADVANCED_PORTS_TCP":   {"1024", intKey(1, 65535, func(c *Config) *int { return &c.AdvancedPortsTCP })},
	"ADVANCED_PORTS_UDP":   {"1024", intKey(1, 65535, func(c *Config) *int { return &c.AdvancedPortsUDP })},
	"ADVANCED_EXCLUDE_TCP": {defaultExcludeTCP, portsKey(func(c *Config) *portset.Set { return &c.AdvancedExcludeTCP })},
	"ADVANCED_EXCLUDE_UDP": {defaultExcludeUDP, portsKey(func(c *Config) *portset.Set { return &c.AdvancedExcludeUDP })},
	"IGNORE_FILE":          {"", pathKey(func(c *Config) *string { return &c.IgnoreFile })},
	"HISTORY_FILE":         {"", pathKey(func(c *Config) *string { return &c.HistoryFile })},
	"BLOCKED_FILE":         {"", pathKey(func(c *Config) *string { return &c.BlockedFile })},
	"RESOLVE_HOST":         {"0", boolKey(func(c *Config) *bool { return &c.ResolveHost })},
	"BLOCK_TCP":            {"0", blockKey(func(c *Config) *BlockMode { return &c.BlockTCP })},
	"BLOCK_UDP":            {"0", blockKey(func(c *Config) *BlockMode { return &c.BlockUDP })},
	"KILL_ROUTE":           {"", targetKey(func(c *Config) *string { return &c.KillRoute })},
	"KILL_HOSTS_DENY":      {"", targetKey(func(c *Config) *string { return &c.KillHostsDeny })},
	"KILL_RUN_CMD":         {"", stringKey(func(c *Config) *string { return &c.KillRunCmd })},
	"KILL_RUN_CMD_FIRST":   {"0", boolKey(func(c *Config) *bool { return &c.KillRunCmdFirst })},
	"SCAN_TRIGGER":         {"0", intKey(0, maxScanTrigger, func(c *Config) *int { return &c.ScanTrigger })},
	"PORT_BANNER":          {"", stringKey(func(c *Config) *string { return &c.PortBanner })},

	// Our extensions; each is documented in docs/configuration.md.
	"KILL_ROUTE6":     {"", targetKey(func(c *Config) *string { return &c.KillRoute6 })},
	"TCP_MODE":        {"", modeKey([]string{"tcp", "stcp", "atcp"}, func(c *Config) *string { return &c.TCPMode })},
	"UDP_MODE":        {"", modeKey([]string{"udp", "sudp", "audp"}, func(c *Config) *string { return &c.UDPMode })},
	"HOSTS_DENY_FILE": {"/etc/hosts.deny", pathKey(func(c *Config) *string { return &c.HostsDenyFile })},
	"HISTORY_FORMAT":  {"1.2", setHistoryFormat},
	"COMMAND_TIMEOUT": {"30", secondsKey(1, 3600, func(c *Config) *time.Duration { return &c.CommandTimeout })},
	"RESOLVE_TIMEOUT": {"2", secondsKey(1, 60, func(c *Config) *time.Duration { return &c.ResolveTimeout })},
	"MAX_SOURCES":     {"65536", intKey(1, 10000000, func(c *Config) *int { return &c.MaxSources })},

	// How far apart SCAN_TRIGGER's hits may be; "0": any distance.
	"SCAN_TRIGGER_WINDOW": {"3600", secondsKey(0, maxBanSeconds, func(c *Config) *time.Duration { return &c.ScanTriggerWindow })},

	// Kernel enforcement and ban lifetime.
	"BLOCKER":                {"command", modeKey([]string{"command", "nftables", "iptables", "route", "auto"}, func(c *Config) *string { return &c.Blocker })},
	"KERNEL_TRAP":            {"1", boolKey(func(c *Config) *bool { return &c.KernelTrap })},
	"PROTECT_INFRASTRUCTURE": {"1", boolKey(func(c *Config) *bool { return &c.ProtectInfrastructure })},
	"PROTECT_PEERS":          {"1", boolKey(func(c *Config) *bool { return &c.ProtectPeers })},
	"SERVICE_GRACE":          {"3600", secondsKey(0, 7*86400, func(c *Config) *time.Duration { return &c.ServiceGrace })},
	"BAN_PREFIX6":            {"128", intKey(16, 128, func(c *Config) *int { return &c.BanPrefix6 })},
	"BAN_FORWARD":            {"1", boolKey(func(c *Config) *bool { return &c.BanForward })},
	"BAN_TIME":               {"0", secondsKey(0, maxBanSeconds, func(c *Config) *time.Duration { return &c.BanTime })},
	"BAN_TIME_MAX":           {"0", secondsKey(0, maxBanSeconds, func(c *Config) *time.Duration { return &c.BanTimeMax })},
	"UNKILL_ROUTE":           {"", targetKey(func(c *Config) *string { return &c.UnkillRoute })},
	"UNKILL_ROUTE6":          {"", targetKey(func(c *Config) *string { return &c.UnkillRoute6 })},
	"BAN_FILE":               {"", pathKey(func(c *Config) *string { return &c.BanFile })},
	"CONTROL_SOCKET":         {DefaultControlSocket, pathKey(func(c *Config) *string { return &c.ControlSocket })},

	// The fleet: bans shared over NATS JetStream (package fleet).
	"FLEET_URL":          {"", urlsKey(func(c *Config) *[]string { return &c.FleetURL })},
	"FLEET_LISTEN":       {"", hostPortKey(func(c *Config) *string { return &c.FleetListen })},
	"FLEET_CLUSTER":      {"", hostPortKey(func(c *Config) *string { return &c.FleetCluster })},
	"FLEET_ROUTES":       {"", hostPortsKey(func(c *Config) *[]string { return &c.FleetRoutes })},
	"FLEET_STORE":        {DefaultFleetStore, pathKey(func(c *Config) *string { return &c.FleetStore })},
	"FLEET_NAME":         {"", memberKey(func(c *Config) *string { return &c.FleetName })},
	"FLEET_TOKEN":        {"", stringKey(func(c *Config) *string { return &c.FleetToken })},
	"FLEET_CREDS":        {"", pathKey(func(c *Config) *string { return &c.FleetCreds })},
	"FLEET_TLS_CA":       {"", pathKey(func(c *Config) *string { return &c.FleetTLSCA })},
	"FLEET_TLS_CERT":     {"", pathKey(func(c *Config) *string { return &c.FleetTLSCert })},
	"FLEET_TLS_KEY":      {"", pathKey(func(c *Config) *string { return &c.FleetTLSKey })},
	"FLEET_MAX_BAN_TIME": {"86400", secondsKey(60, maxBanSeconds, func(c *Config) *time.Duration { return &c.FleetMaxBanTime })},
	"FLEET_MAX_RATE":     {"100", intKey(1, 1000000, func(c *Config) *int { return &c.FleetMaxRate })},

	// Observability and alerts.
	"METRICS_ADDRESS":     {"", listenKey(func(c *Config) *string { return &c.MetricsAddress })},
	"EVENT_LOG":           {"", streamKey(func(c *Config) *string { return &c.EventLog })},
	"ALERT_MAILER":        {"", modeKey([]string{"sendmail", "smtp"}, func(c *Config) *string { return &c.AlertMailer })},
	"ALERT_EMAIL_TO":      {"", stringKey(func(c *Config) *string { return &c.AlertEmailTo })},
	"ALERT_EMAIL_FROM":    {"", stringKey(func(c *Config) *string { return &c.AlertEmailFrom })},
	"ALERT_SENDMAIL":      {"/usr/sbin/sendmail", stringKey(func(c *Config) *string { return &c.AlertSendmail })},
	"ALERT_SMTP_SERVER":   {"", stringKey(func(c *Config) *string { return &c.AlertSMTPServer })},
	"ALERT_SMTP_USER":     {"", stringKey(func(c *Config) *string { return &c.AlertSMTPUser })},
	"ALERT_SMTP_PASSWORD": {"", stringKey(func(c *Config) *string { return &c.AlertSMTPPassword })},
	"ALERT_SMTP_STARTTLS": {"0", boolKey(func(c *Config) *bool { return &c.AlertSMTPStartTLS })},
	"ALERT_WEBHOOK_URL":   {"", stringKey(func(c *Config) *string { return &c.AlertWebhookURL })},
	"ALERT_WEBHOOK_TOKEN": {"", stringKey(func(c *Config) *string { return &c.AlertWebhookToken })},
	"ALERT_DELAY":         {"5", secondsKey(1, 3600, func(c *Config) *time.Duration { return &c.AlertDelay })},
	"ALERT_WINDOW":        {"60", secondsKey(1, 86400, func(c *Config) *time.Duration { return &c.AlertWindow })},
	"ALERT_MAX_PER_HOUR":  {"60", intKey(1, 100000, func(c *Config) *int { return &c.AlertMaxPerHour })},

	// CrowdSec's Local API; checked together by package settings.
	"CROWDSEC_URL":              {"", stringKey(func(c *Config) *string { return &c.CrowdSecURL })},
	"CROWDSEC_MACHINE_ID":       {"", stringKey(func(c *Config) *string { return &c.CrowdSecMachineID })},
	"CROWDSEC_MACHINE_PASSWORD": {"", stringKey(func(c *Config) *string { return &c.CrowdSecMachinePassword })},
	"CROWDSEC_CREDENTIALS":      {"", pathKey(func(c *Config) *string { return &c.CrowdSecCredentials })},
	"CROWDSEC_BOUNCER_KEY":      {"", stringKey(func(c *Config) *string { return &c.CrowdSecBouncerKey })},
	"CROWDSEC_POLL":             {"10", secondsKey(1, 3600, func(c *Config) *time.Duration { return &c.CrowdSecPoll })},
}

// DefaultFleetStore is where the embedded NATS server (FLEET_LISTEN)
// keeps its JetStream data.
const DefaultFleetStore = "/var/lib/portsentry/fleet"

// fields splits a list on commas and white space.
func fields(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// urlsKey is one or more nats:// or tls:// URLs of NATS servers.
func urlsKey(field func(*Config) *[]string) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		var out []string
		for _, f := range fields(v) {
			u, err := url.Parse(f)
			if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
				return invalid("%q: want nats://HOST:PORT or tls://HOST:PORT, one or more, separated by commas or spaces", f)
			}
			out = append(out, f)
		}
		*field(c) = out
		return nil
	}
}

// checkHostPort accepts "HOST:PORT" and ":PORT".
func checkHostPort(v string) error {
	_, p, err := net.SplitHostPort(v)
	if err != nil {
		return invalid("%q: want HOST:PORT", v)
	}
	if _, ok := parseDecimal(p, 1, 65535); !ok {
		return invalid("%q: port must be from 1 to 65535", v)
	}
	return nil
}

func hostPortKey(field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		if v != "" {
			if err := checkHostPort(v); err != nil {
				return err
			}
		}
		*field(c) = v
		return nil
	}
}

func hostPortsKey(field func(*Config) *[]string) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		var out []string
		for _, f := range fields(v) {
			out = append(out, f)
			if err := checkHostPort(f); err != nil {
				return err
			}
		}
		*field(c) = out
		return nil
	}
}

// memberKey is a fleet member's name: a NATS subject token.
func memberKey(field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		ok := len(v) <= 64
		for _, r := range v {
			ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}
		if !ok {
			return invalid("%q: want 1 to 64 letters, digits, - or _", v)
		}
		*field(c) = v
		return nil
	}
}

// streamKey is a path, or "-"/"stdout" for standard output.
func streamKey(field func(*Config) *string) func(*Config, string, string) error {
	path := pathKey(field)
	return func(c *Config, v, dir string) error {
		if v == "-" || v == "stdout" {
			*field(c) = v
			return nil
		}
		return path(c, v, dir)
	}
}

// listenKey is an address to listen on: HOST:PORT, the host an IP address,
// a name, or empty for every interface; the port a number (a bare host
// would make the listener fail at start, after the sensors are set).
func listenKey(field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		if v == "" {
			*field(c) = ""
			return nil
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			return invalid("%q: want HOST:PORT, such as 127.0.0.1:9617 or [::1]:9617", v)
		}
		// Port 0 lets the kernel choose (tests; the debug log names it).
		if _, ok := parseDecimal(port, 0, 65535); !ok {
			return invalid("%q: the port must be a number from 0 to 65535", v)
		}
		if strings.ContainsAny(host, " \t/") {
			return invalid("%q: %q is not a host name or address", v, host)
		}
		*field(c) = v
		return nil
	}
}

// maxBanSeconds bounds BAN_TIME and BAN_TIME_MAX: ten years, which is
// "permanent" in practice while keeping expiry arithmetic far from overflow.
const maxBanSeconds = 10 * 365 * 24 * 3600

// maxScanTrigger bounds SCAN_TRIGGER: the engine keeps up to that many
// ports per source and looks through them on each of its probes, so a
// large trigger would let a source (forged sources too) cost that much per
// packet. PortSentry's own examples use 0 to 3.
const maxScanTrigger = 1000

// DefaultControlSocket is where the daemon listens for operator commands
// (portsentry list, block, unblock, status) unless CONTROL_SOCKET says else.
const DefaultControlSocket = "/run/portsentry/portsentry.sock"

// Keys returns every key portsentry.conf accepts, sorted; for help texts and
// documentation tests.
func Keys() []string {
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w "+format, append([]any{ErrInvalidValue}, args...)...)
}

func stringKey(field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		*field(c) = v
		return nil
	}
}

// targetKey is a command or line that must say where the attacker's address
// goes: without $TARGET$ a "block" would act on nothing, silently.
func targetKey(field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		if v != "" && !strings.Contains(v, "$TARGET$") {
			return invalid("%q: must contain $TARGET$", v)
		}
		*field(c) = v
		return nil
	}
}

// pathKey resolves a relative path against the config file's directory.
func pathKey(field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, v, dir string) error {
		if v != "" && !filepath.IsAbs(v) {
			v = filepath.Join(dir, v)
		}
		*field(c) = v
		return nil
	}
}

func portsKey(field func(*Config) *portset.Set) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		s, err := portset.Parse(v)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidValue, err)
		}
		*field(c) = s
		return nil
	}
}

// parseDecimal accepts plain digits only: no sign, no spaces, no hex, so a
// typo never turns into a surprising number. ok is false when out of range.
func parseDecimal(v string, lo, hi int) (int, bool) {
	if v == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int(v[i]-'0')
		if n > hi {
			return 0, false
		}
	}
	return n, n >= lo
}

func intKey(lo, hi int, field func(*Config) *int) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		n, ok := parseDecimal(v, lo, hi)
		if !ok {
			return invalid("%q: must be a whole number from %d to %d", v, lo, hi)
		}
		*field(c) = n
		return nil
	}
}

func secondsKey(lo, hi int, field func(*Config) *time.Duration) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		n, ok := parseDecimal(v, lo, hi)
		if !ok {
			return invalid("%q: must be a whole number of seconds from %d to %d", v, lo, hi)
		}
		*field(c) = time.Duration(n) * time.Second
		return nil
	}
}

func boolKey(field func(*Config) *bool) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		switch v {
		case "0":
			*field(c) = false
		case "1":
			*field(c) = true
		default:
			return invalid("%q: must be 0 or 1", v)
		}
		return nil
	}
}

func blockKey(field func(*Config) *BlockMode) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		switch v {
		case "0", "1", "2":
			*field(c) = BlockMode(v[0] - '0')
			return nil
		}
		return invalid("%q: must be 0 (log only), 1 (block) or 2 (run KILL_RUN_CMD only)", v)
	}
}

func modeKey(modes []string, field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, v, _ string) error {
		if v != "" && !slices.Contains(modes, v) {
			return invalid("%q: must be %s", v, orList(modes, "or"))
		}
		*field(c) = v
		return nil
	}
}

func setHistoryFormat(c *Config, v, _ string) error {
	switch v {
	case "1.2":
		c.HistoryFormat = History12
	case "2.x":
		c.HistoryFormat = History2x
	default:
		return invalid(`%q: must be "1.2" or "2.x"`, v)
	}
	return nil
}

// unknownKey builds the error for a key not in keys, with suggestions: the
// same key in another case, keys within a small edit distance (typos), or
// the keys it is a prefix of (users of 2.x may rely on its prefix matching).
func unknownKey(k string) *UnknownKeyError {
	e := &UnknownKeyError{Key: k}
	upper := strings.ToUpper(k)
	if _, ok := keys[upper]; ok {
		e.Suggestions = []string{upper}
		return e
	}
	// Allow about one typo per four characters, at least one.
	best := max(1, len(upper)/4)
	for _, name := range Keys() {
		d := distance(upper, name, best)
		switch {
		case d < best:
			best = d
			e.Suggestions = []string{name}
		case d == best:
			e.Suggestions = append(e.Suggestions, name)
		}
	}
	if len(e.Suggestions) > 0 || upper == "" {
		return e
	}
	for _, name := range Keys() {
		if strings.HasPrefix(name, upper) {
			e.Suggestions = append(e.Suggestions, name)
		}
	}
	return e
}

// distance is the Levenshtein distance between a and b, or limit+1 as soon
// as it is known to exceed limit (keys are short; inputs may not be).
func distance(a, b string, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
