// Package daemon wires sensors, engine and responders together and runs
// them: start-up, the event loop, reload on SIGHUP and shutdown.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/engine"
	"github.com/portsentry-go/portsentry/internal/event"
	"github.com/portsentry-go/portsentry/internal/ignore"
	"github.com/portsentry-go/portsentry/internal/portset"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/sensor/connect"
)

// Options are the daemon's start-up choices from the command line.
type Options struct {
	ConfigPath   string       // -c
	DefaultsPath string       // Debian's /etc/default/portsentry; "" to skip
	Modes        []event.Mode // from flags; empty: from the configuration
	Style2x      bool         // $MODE$ expands to connect/stealth (2.x flags were used)
	AllowLocal   bool         // -L: act on probes from this host's own addresses
	Log          *slog.Logger
	// Ready is called once every sensor is bound, after the "now active and
	// listening" line (systemd's READY=1 hooks in here).
	Ready func()
}

// ErrUnsupportedMode is wrapped when a mode needs a sensor this build lacks.
var ErrUnsupportedMode = errors.New("mode not supported yet")

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
	s := &Settings{Conf: conf}
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
		if p.mode == 1 && conf.KillRoute == "" && conf.KillHostsDeny == "" {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s=\"1\" but neither KILL_ROUTE nor KILL_HOSTS_DENY is set: nothing will be blocked", p.name))
		}
		if p.mode == 2 && conf.KillRunCmd == "" {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s=\"2\" but KILL_RUN_CMD is not set: nothing will run", p.name))
		}
	}
	for _, m := range s.Modes {
		if ports := s.connectPorts(m.Proto()); m.Style2x() == "connect" && ports.Len() == 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("mode %s: %s_PORTS is empty", m, m.Proto()))
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
		if m.Style2x() != "connect" {
			return nil, fmt.Errorf("%w: %s (stealth and advanced modes need the packet sensor, which this version does not have; use tcp/udp connect mode)", ErrUnsupportedMode, m)
		}
	}
	out := make([]event.Mode, 0, 2)
	for p := range have {
		if have[p] {
			out = append(out, seen[p])
		}
	}
	return out, nil
}

// connectPorts is the trap port set for proto when a connect mode is on.
func (s *Settings) connectPorts(proto event.Proto) portset.Set {
	if proto == event.UDP {
		return s.Conf.UDPPorts
	}
	return s.Conf.TCPPorts
}

// sensorConfig is what the connect sensor binds for these settings.
func (s *Settings) sensorConfig() connect.Config {
	var c connect.Config
	for _, m := range s.Modes {
		switch m {
		case event.ModeTCP:
			c.TCP = s.Conf.TCPPorts
		case event.ModeUDP:
			c.UDP = s.Conf.UDPPorts
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
	}
}

// engineOptions builds the engine's options; protect says which sources are
// never acted on.
func (s *Settings) engineOptions(protect func(netip.Addr) bool) engine.Options {
	return engine.Options{
		Trigger:    s.Conf.ScanTrigger,
		Response:   [2]engine.Response{engine.Response(s.Conf.BlockTCP), engine.Response(s.Conf.BlockUDP)},
		Ignore:     protect,
		MaxSources: s.Conf.MaxSources,
	}
}

// Summary describes the settings in one line, for start-up and "check".
func (s *Settings) Summary() string {
	var parts []string
	for _, m := range s.Modes {
		ports := s.connectPorts(m.Proto())
		parts = append(parts, fmt.Sprintf("%s on %d %s ports", m, ports.Len(), m.Proto()))
	}
	return fmt.Sprintf("modes: %s; BLOCK_TCP=%d BLOCK_UDP=%d SCAN_TRIGGER=%d; %d ignore entries",
		strings.Join(parts, ", "), s.Conf.BlockTCP, s.Conf.BlockUDP, s.Conf.ScanTrigger, s.Ignore.Len())
}
