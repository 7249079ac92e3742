// Package settings turns the configuration files and the command line into
// a checked Settings, and a Settings into what each part of the daemon
// takes: the sensors' ports, enforcement's plan and trap, reporting's files
// and destinations. A bad file fails Load and changes nothing.
package settings

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/crowdsec"
	"github.com/portsentry-go/portsentry/internal/enforce"
	"github.com/portsentry-go/portsentry/internal/enforce/bans"
	"github.com/portsentry-go/portsentry/internal/enforce/block"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/fleet"
	"github.com/portsentry-go/portsentry/internal/ignore"
	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/internal/report"
	"github.com/portsentry-go/portsentry/internal/report/alert"
	"github.com/portsentry-go/portsentry/internal/report/metrics"
	"github.com/portsentry-go/portsentry/internal/sandbox"
	"github.com/portsentry-go/portsentry/internal/sensor/capture"
	"github.com/portsentry-go/portsentry/internal/sensor/connect"
)

// Options are the start-up choices from the command line.
type Options struct {
	ConfigPath   string       // -c
	DefaultsPath string       // Debian's /etc/default/portsentry; "" to skip
	Modes        []event.Mode // from flags; empty: from the configuration
	Style2x      bool         // $MODE$ expands to connect/stealth (2.x flags were used)
	AllowLocal   bool         // -L: act on probes from this host's own addresses
	// Interfaces are the capture interfaces (2.x -i): empty or ALL_NLO for
	// all but loopback, ALL for all, else names.
	Interfaces []string
	// NoServiceCheck (-S) counts probes to ports a local service uses.
	NoServiceCheck bool
	// Unit, when set, is the systemd unit the daemon will run under: the
	// files it writes are checked against the unit's sandbox as well as
	// against the file system as it is. `portsentry check` sets it; the
	// daemon does not (under its unit, the file system it sees is the
	// sandbox).
	Unit *sandbox.Unit
}

// Settings is a loaded, validated configuration: everything a (re)start
// needs, built before anything is touched so that a bad file changes nothing.
type Settings struct {
	Opts   Options
	Conf   *config.Config
	Modes  []event.Mode
	Ignore *ignore.List // IGNORE_FILE and its .static companion
	// IgnoreMissing is true when an ignore file was configured but neither
	// it nor its .static companion exists.
	IgnoreMissing bool
	Warnings      []string
	// crowdsec is CROWDSEC_*, checked; nil when not configured.
	crowdsec *crowdsec.Config
}

// ConfigError wraps every error of Load: the configuration, not the
// system, is at fault, and nothing was started or changed. Err may join
// several errors (errors.Join), one a line.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Load reads and checks the configuration named by opts. It is what the
// daemon does at start and at reload, and what "portsentry check" runs.
func Load(opts Options) (*Settings, error) {
	s, err := load(opts)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	return s, nil
}

func load(opts Options) (*Settings, error) {
	conf, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	s := &Settings{Opts: opts, Conf: conf, Warnings: conf.Warnings}
	if opts.DefaultsPath != "" {
		// Debian's start-up file wins over portsentry.conf's TCP_MODE and
		// UDP_MODE: PortSentry 1.2's init script turned it into the
		// command-line flags, and an administrator who upgraded from 1.2
		// chooses the modes there.
		d := config.Default()
		if err := d.ApplyDefaultsFile(opts.DefaultsPath); err != nil {
			return nil, err
		}
		for _, m := range []struct {
			key           string
			conf, defined *string
		}{{"TCP_MODE", &conf.TCPMode, &d.TCPMode}, {"UDP_MODE", &conf.UDPMode, &d.UDPMode}} {
			if *m.defined == "" {
				continue
			}
			if *m.conf != "" && *m.conf != *m.defined {
				s.Warnings = append(s.Warnings, fmt.Sprintf("%s=%q of %s is overridden by %s=%q of %s", m.key, *m.conf, opts.ConfigPath, m.key, *m.defined, opts.DefaultsPath))
			}
			*m.conf = *m.defined
		}
	}
	// Mistakes that do not stop the checks after them are gathered, so
	// that one run of `portsentry check` names them all.
	var errs []error
	if err := s.checkAlerts(); err != nil {
		errs = append(errs, err)
	}
	fileErrs, fileWarnings := s.checkFiles()
	errs = append(errs, fileErrs...)
	s.Warnings = append(s.Warnings, fileWarnings...)
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int { return lineOf(a) - lineOf(b) })
		return nil, errors.Join(errs...)
	}
	if s.crowdsec, err = loadCrowdSec(conf); err != nil {
		return nil, err
	}
	if s.Modes, err = resolveModes(opts.Modes, conf); err != nil {
		return nil, err
	}
	if err := s.checkIgnoreFiles(); err != nil {
		return nil, err
	}
	if conf.IgnoreFile != "" {
		s.Ignore, err = ignore.Load(conf.IgnoreFile, conf.IgnoreFile+".static")
		if err != nil {
			return nil, err
		}
		if s.Ignore.Len() == 0 && !anyExists(conf.IgnoreFile, conf.IgnoreFile+".static") {
			s.IgnoreMissing = true
			s.Warnings = append(s.Warnings, fmt.Sprintf("ignore file %s does not exist: only this host's own addresses are ignored", conf.IgnoreFile))
		}
	} else {
		s.Ignore = ignore.New()
	}
	for _, p := range []struct {
		name string
		mode config.BlockMode
	}{{"BLOCK_TCP", conf.BlockTCP}, {"BLOCK_UDP", conf.BlockUDP}} {
		if p.mode == 1 && conf.Blocker == "command" && conf.KillRoute == "" && conf.KillHostsDeny == "" {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s=\"1\" but neither KILL_ROUTE nor KILL_HOSTS_DENY is set: nothing will be blocked", p.name))
		}
		if p.mode == 2 && conf.KillRunCmd == "" {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s=\"2\" but KILL_RUN_CMD is not set: nothing will run", p.name))
		}
	}
	for _, m := range s.Modes {
		if ports := s.Watched(m); ports.Len() == 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("mode %s watches no port", m))
		}
	}
	return s, nil
}

// checkIgnoreFiles refuses an ignore file that is a directory (read, it
// would fail at its "line 1"), naming the key that names it.
func (s *Settings) checkIgnoreFiles() error {
	c := s.Conf
	if c.IgnoreFile == "" {
		return nil
	}
	for _, p := range []string{c.IgnoreFile, c.IgnoreFile + ".static"} {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return c.ErrorAt("IGNORE_FILE", fmt.Errorf("%s: is a directory; want the path of a file", p))
		}
	}
	return nil
}

// lineOf is the line a configuration error names, 0 for none.
func lineOf(err error) int {
	var e *config.Error
	if errors.As(err, &e) {
		return e.Line
	}
	return 0
}

func anyExists(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			return true
		}
	}
	return false
}

// resolveModes picks the modes: flags, else TCP_MODE/UDP_MODE, else connect
// mode on both protocols. At most one mode per protocol.
func resolveModes(flags []event.Mode, conf *config.Config) ([]event.Mode, error) {
	modes := flags
	if len(modes) == 0 {
		for _, name := range []string{conf.TCPMode, conf.UDPMode} {
			if name == "" {
				continue
			}
			m, ok := event.ParseMode(name)
			if !ok {
				return nil, fmt.Errorf("unknown mode %q", name)
			}
			modes = append(modes, m)
		}
	}
	if len(modes) == 0 {
		modes = []event.Mode{event.ModeTCP, event.ModeUDP}
	}
	var seen [2]event.Mode
	var have [2]bool
	for _, m := range modes {
		p := m.Proto()
		if have[p] && seen[p] != m {
			return nil, fmt.Errorf("modes %s and %s both watch %s: choose one", seen[p], m, p)
		}
		seen[p], have[p] = m, true
	}
	out := make([]event.Mode, 0, 2)
	for p := range have {
		if have[p] {
			out = append(out, seen[p])
		}
	}
	return out, nil
}

// watched is the set of ports mode m watches: TCP_PORTS/UDP_PORTS in
// connect and stealth modes; in advanced mode every port below
// ADVANCED_PORTS_* but the ADVANCED_EXCLUDE_* ones. (Ports a service uses
// are left out at the moment a packet arrives, not here.)
func (s *Settings) Watched(m event.Mode) portset.Set {
	c := s.Conf
	switch m {
	case event.ModeTCP, event.ModeSTCP:
		return c.TCPPorts
	case event.ModeUDP, event.ModeSUDP:
		return c.UDPPorts
	case event.ModeATCP:
		set := portset.Below(c.AdvancedPortsTCP)
		set.RemoveSet(&c.AdvancedExcludeTCP)
		return set
	case event.ModeAUDP:
		set := portset.Below(c.AdvancedPortsUDP)
		set.RemoveSet(&c.AdvancedExcludeUDP)
		return set
	}
	return portset.Set{}
}

// needsCapture reports whether a stealth or advanced mode is on.
func (s *Settings) NeedsCapture() bool {
	for _, m := range s.Modes {
		if m.Passive() {
			return true
		}
	}
	return false
}

// captureConfig is what the packet sensor watches for these settings.
func (s *Settings) CaptureConfig() capture.Config {
	c := capture.Config{Interfaces: s.Opts.Interfaces}
	for _, m := range s.Modes {
		if !m.Passive() {
			continue
		}
		if m.Proto() == event.UDP {
			c.UDP, c.UDPMode = s.Watched(m), m
		} else {
			c.TCP, c.TCPMode = s.Watched(m), m
		}
	}
	return c
}

// sensorConfig is what the connect sensor binds for these settings.
func (s *Settings) SensorConfig() connect.Config {
	var c connect.Config
	for _, m := range s.Modes {
		switch m {
		case event.ModeTCP:
			c.TCP = s.Watched(m)
		case event.ModeUDP:
			c.UDP = s.Watched(m)
		}
	}
	c.Banner = s.Conf.PortBanner
	return c
}

// enforceSettings is what enforcement takes from these settings.
func (s *Settings) Enforce() enforce.Settings {
	c := s.Conf
	return enforce.Settings{
		Engine: engine.Options{
			Trigger:    c.ScanTrigger,
			Window:     c.ScanTriggerWindow,
			Response:   [2]engine.Response{engine.Response(c.BlockTCP), engine.Response(c.BlockUDP)},
			MaxSources: c.MaxSources,
		},
		Plan: respond.Plan{
			KillRoute:       c.KillRoute,
			KillRoute6:      c.KillRoute6,
			KillHostsDeny:   c.KillHostsDeny,
			KillRunCmd:      c.KillRunCmd,
			KillRunCmdFirst: c.KillRunCmdFirst,
			UnkillRoute:     c.UnkillRoute,
			UnkillRoute6:    c.UnkillRoute6,
		},
		CommandTimeout: c.CommandTimeout,
		HostsDenyFile:  c.HostsDenyFile,
		Style2x:        s.Opts.Style2x,
		ServiceGrace:   c.ServiceGrace,
		Trap:           s.trap(),
		ImportMax:      c.BanTimeMax,
	}
}

// trap is the kernel trap these settings allow, or nil: it needs
// KERNEL_TRAP="1", a trigger that acts on the first probe, the service
// check (the kernel's is the same check), and a stealth or advanced mode
// whose protocol blocks (BLOCK_*="1"). Only a blocker that traps (nftables)
// sets it.
func (s *Settings) trap() *block.Trap {
	c, opts := s.Conf, s.Opts
	if !c.KernelTrap || c.ScanTrigger > 1 || opts.NoServiceCheck {
		return nil
	}
	t := &block.Trap{TTL: s.policy().Duration(1)}
	if c.ProtectPeers {
		t.Peers = PeerTime
	}
	t.Grace = c.ServiceGrace
	for _, ifc := range opts.Interfaces {
		if ifc != "ALL" && ifc != "ALL_NLO" {
			t.Interfaces = append(t.Interfaces, ifc)
		}
	}
	for _, m := range s.Modes {
		switch {
		case !m.Passive():
		case m.Proto() == event.TCP && c.BlockTCP == 1:
			t.TCP = s.Watched(m)
		case m.Proto() == event.UDP && c.BlockUDP == 1:
			t.UDP = s.Watched(m)
		}
	}
	if t.TCP.Len() == 0 && t.UDP.Len() == 0 {
		return nil
	}
	return t
}

// Fleet is the fleet these settings join (FLEET_*); its Enabled is false
// when they join none. The member's name defaults to the host name.
func (s *Settings) Fleet() fleet.Config {
	c := s.Conf
	name := c.FleetName
	if name == "" {
		host, _ := os.Hostname()
		name = fleet.MemberFromHost(host)
	}
	return fleet.Config{
		URLs: c.FleetURL, Listen: c.FleetListen, Cluster: c.FleetCluster, Routes: c.FleetRoutes, Store: c.FleetStore,
		Name: name, Token: c.FleetToken, Creds: c.FleetCreds,
		TLSCA: c.FleetTLSCA, TLSCert: c.FleetTLSCert, TLSKey: c.FleetTLSKey,
		MaxBanTime: c.FleetMaxBanTime, MaxRate: c.FleetMaxRate,
	}
}

// PeerTime is how long a source stays a peer after its last packet of an
// established TCP connection: long enough for a client's working day of
// short sessions, short enough that an address handed to someone else
// (DHCP, a NAT's port range) stops being spared within the hour.
const PeerTime = time.Hour

func (s *Settings) policy() bans.Policy {
	return bans.Policy{Base: s.Conf.BanTime, Max: s.Conf.BanTimeMax}
}

// jailOptions choose the ban record and the blocker.
func (s *Settings) Jail() enforce.JailOptions {
	return enforce.JailOptions{Blocker: s.Conf.Blocker, BanFile: s.Conf.BanFile, Policy: s.policy(), Prefix6: s.Conf.BanPrefix6,
		InputOnly: !s.Conf.BanForward}
}

// reportSettings is what reporting takes from these settings.
func (s *Settings) Report() report.Settings {
	c := s.Conf
	return report.Settings{
		HistoryFile:    c.HistoryFile,
		BlockedFile:    c.BlockedFile,
		History2x:      c.HistoryFormat == config.History2x,
		Resolve:        c.ResolveHost,
		ResolveTimeout: c.ResolveTimeout,
	}
}

// destinations are the optional report destinations (EVENT_LOG, ALERT_*,
// METRICS_ADDRESS).
func (s *Settings) Destinations(version string, gauges metrics.Funcs) report.Destinations {
	c := s.Conf
	return report.Destinations{
		Version:        version,
		EventLog:       c.EventLog,
		Alert:          s.alertConfig(version),
		MetricsAddress: c.MetricsAddress,
		Gauges:         gauges,
	}
}

// alertKeys names the ALERT_* key behind each alert.Config field.
var alertKeys = map[string]string{
	"Mailer":       "ALERT_MAILER",
	"SendmailPath": "ALERT_SENDMAIL",
	"SMTPAddr":     "ALERT_SMTP_SERVER",
	"SMTPUser":     "ALERT_SMTP_USER",
	"SMTPPassword": "ALERT_SMTP_PASSWORD",
	"SMTPStartTLS": "ALERT_SMTP_STARTTLS",
	"From":         "ALERT_EMAIL_FROM",
	"To":           "ALERT_EMAIL_TO",
	"WebhookURL":   "ALERT_WEBHOOK_URL",
	"WebhookToken": "ALERT_WEBHOOK_TOKEN",
	"Delay":        "ALERT_DELAY",
	"Window":       "ALERT_WINDOW",
	"MaxPerHour":   "ALERT_MAX_PER_HOUR",
}

// checkAlerts validates the ALERT_* keys together, as the alerter will
// take them, and names the key at fault and its line. A key the file does
// not set (ALERT_EMAIL_TO missing) is reported at the line of the key that
// needs it (ALERT_MAILER).
func (s *Settings) checkAlerts() error {
	cfg := s.alertConfig("")
	if !cfg.Enabled() {
		return nil
	}
	err := cfg.Validate()
	if err == nil {
		return nil
	}
	c := s.Conf
	enabler := "ALERT_MAILER"
	if c.AlertMailer == "" {
		enabler = "ALERT_WEBHOOK_URL"
	}
	var fe *alert.FieldError
	if !errors.As(err, &fe) {
		return c.ErrorAt(enabler, err)
	}
	key, ok := alertKeys[fe.Field]
	if !ok {
		// Not from a key (the host name, from the system).
		return c.ErrorAt(enabler, err)
	}
	e := c.ErrorAt(key, fe.Err)
	if e.Line == 0 && c.Line(enabler) > 0 {
		e.Line = c.Line(enabler)
		e.Err = fmt.Errorf("%w: set %s (%s on this line needs it)", fe.Err, key, enabler)
	}
	return e
}

// alertConfig is the alerting these settings ask for (ALERT_*).
func (s *Settings) alertConfig(version string) alert.Config {
	c := s.Conf
	var to []string
	for _, a := range strings.Split(c.AlertEmailTo, ",") {
		if a = strings.TrimSpace(a); a != "" {
			to = append(to, a)
		}
	}
	return alert.Config{
		Mailer: c.AlertMailer, SendmailPath: c.AlertSendmail,
		SMTPAddr: c.AlertSMTPServer, SMTPUser: c.AlertSMTPUser, SMTPPassword: c.AlertSMTPPassword,
		SMTPStartTLS: c.AlertSMTPStartTLS, From: c.AlertEmailFrom, To: to,
		WebhookURL: c.AlertWebhookURL, WebhookToken: c.AlertWebhookToken,
		Delay: c.AlertDelay, Window: c.AlertWindow, MaxPerHour: c.AlertMaxPerHour,
		Version: version,
	}
}

// Summary describes the settings in one line, for start-up and "check".
func (s *Settings) Summary() string {
	var parts []string
	for _, m := range s.Modes {
		ports := s.Watched(m)
		parts = append(parts, fmt.Sprintf("%s on %d %s ports", m, ports.Len(), m.Proto()))
	}
	return fmt.Sprintf("modes: %s; BLOCK_TCP=%d BLOCK_UDP=%d SCAN_TRIGGER=%d BLOCKER=%s; %d ignore entries",
		strings.Join(parts, ", "), s.Conf.BlockTCP, s.Conf.BlockUDP, s.Conf.ScanTrigger, s.Conf.Blocker, s.Ignore.Len())
}
