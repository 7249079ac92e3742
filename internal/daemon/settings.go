// Package daemon wires sensors, engine and responders together and runs
// them: start-up, the event loop, reload on SIGHUP and shutdown.
package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/enforce/respond"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/ignore"
	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/internal/sensor/capture"
	"github.com/portsentry-go/portsentry/internal/sensor/connect"
)

// Options are the daemon's start-up choices from the command line.
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
	Log            *slog.Logger
	// Ready is called once every sensor is bound, after the "now active and
	// listening" line (systemd's READY=1 hooks in here).
	Ready func()
}

// Settings is a loaded, validated configuration: everything a (re)start
// needs, built before anything is touched so that a bad file changes nothing.
type Settings struct {
	Conf   *config.Config
	Modes  []event.Mode
	Ignore *ignore.List // IGNORE_FILE and its .static companion
	// IgnoreMissing is true when an ignore file was configured but neither
	// it nor its .static companion exists.
	IgnoreMissing bool
	Warnings      []string
}

// ConfigError wraps every error of Load: the configuration, not the
// system, is at fault, and nothing was started or changed.
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
	if opts.DefaultsPath != "" {
		// portsentry.conf's own TCP_MODE/UDP_MODE win over Debian's file.
		d := config.Default()
		if err := d.ApplyDefaultsFile(opts.DefaultsPath); err != nil {
			return nil, err
		}
		if conf.TCPMode == "" {
			conf.TCPMode = d.TCPMode
		}
		if conf.UDPMode == "" {
			conf.UDPMode = d.UDPMode
		}
	}
	s := &Settings{Conf: conf, Warnings: conf.Warnings}
	if cfg := s.alertConfig(); cfg.Enabled() {
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("%s: ALERT_*: %w", opts.ConfigPath, err)
		}
	}
	if s.Modes, err = resolveModes(opts.Modes, conf); err != nil {
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
		if ports := s.watched(m); ports.Len() == 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("mode %s watches no port", m))
		}
	}
	return s, nil
}

func anyExists(paths ...string) bool {
	for _, p := range paths {
		if fileExists(p) {
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
func (s *Settings) watched(m event.Mode) portset.Set {
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
func (s *Settings) needsCapture() bool {
	for _, m := range s.Modes {
		if m.Passive() {
			return true
		}
	}
	return false
}

// captureConfig is what the packet sensor watches for these settings.
func (s *Settings) captureConfig(interfaces []string) capture.Config {
	c := capture.Config{Interfaces: interfaces}
	for _, m := range s.Modes {
		if !m.Passive() {
			continue
		}
		if m.Proto() == event.UDP {
			c.UDP, c.UDPMode = s.watched(m), m
		} else {
			c.TCP, c.TCPMode = s.watched(m), m
		}
	}
	return c
}

// sensorConfig is what the connect sensor binds for these settings.
func (s *Settings) sensorConfig() connect.Config {
	var c connect.Config
	for _, m := range s.Modes {
		switch m {
		case event.ModeTCP:
			c.TCP = s.watched(m)
		case event.ModeUDP:
			c.UDP = s.watched(m)
		}
	}
	c.Banner = s.Conf.PortBanner
	return c
}

// plan is the response configuration.
func (s *Settings) plan() respond.Plan {
	c := s.Conf
	return respond.Plan{
		KillRoute:       c.KillRoute,
		KillRoute6:      c.KillRoute6,
		KillHostsDeny:   c.KillHostsDeny,
		KillRunCmd:      c.KillRunCmd,
		KillRunCmdFirst: c.KillRunCmdFirst,
		UnkillRoute:     c.UnkillRoute,
		UnkillRoute6:    c.UnkillRoute6,
	}
}

// engineOptions builds the engine's options; protect says which sources are
// never acted on, inUse (nil: no service check) which ports a service owns.
func (s *Settings) engineOptions(protect func(netip.Addr) bool, inUse func(event.Proto, uint16) bool) engine.Options {
	return engine.Options{
		Trigger:    s.Conf.ScanTrigger,
		Response:   [2]engine.Response{engine.Response(s.Conf.BlockTCP), engine.Response(s.Conf.BlockUDP)},
		Ignore:     protect,
		InUse:      inUse,
		MaxSources: s.Conf.MaxSources,
	}
}

// Summary describes the settings in one line, for start-up and "check".
func (s *Settings) Summary() string {
	var parts []string
	for _, m := range s.Modes {
		ports := s.watched(m)
		parts = append(parts, fmt.Sprintf("%s on %d %s ports", m, ports.Len(), m.Proto()))
	}
	return fmt.Sprintf("modes: %s; BLOCK_TCP=%d BLOCK_UDP=%d SCAN_TRIGGER=%d BLOCKER=%s; %d ignore entries",
		strings.Join(parts, ", "), s.Conf.BlockTCP, s.Conf.BlockUDP, s.Conf.ScanTrigger, s.Conf.Blocker, s.Ignore.Len())
}
