package settings

import (
	"errors"
	"fmt"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/crowdsec"
)

// CrowdSec is what these settings ask of CrowdSec's Local API: push is
// on with machine credentials, pull with a bouncer key; ok is false when
// neither is configured.
func (s *Settings) CrowdSec(version string) (cfg crowdsec.Config, ok bool) {
	if s.crowdsec == nil {
		return crowdsec.Config{}, false
	}
	cfg = *s.crowdsec
	cfg.Version = version
	return cfg, true
}

// Pushes and Pulls tell which halves of CrowdSec cfg turns on.
func Pushes(cfg crowdsec.Config) bool { return cfg.MachineID != "" }

// Pulls: see Pushes.
func Pulls(cfg crowdsec.Config) bool { return cfg.BouncerKey != "" }

// loadCrowdSec checks the CROWDSEC_* keys together and reads the
// credentials file; nil when none is set. Errors name the file, the line
// and the key at fault.
func loadCrowdSec(c *config.Config) (*crowdsec.Config, error) {
	cfg := crowdsec.Config{
		URL:        c.CrowdSecURL,
		MachineID:  c.CrowdSecMachineID,
		Password:   c.CrowdSecMachinePassword,
		BouncerKey: c.CrowdSecBouncerKey,
		Poll:       c.CrowdSecPoll,
	}
	if cfg.URL == "" && cfg.MachineID == "" && cfg.Password == "" && cfg.BouncerKey == "" && c.CrowdSecCredentials == "" {
		return nil, nil
	}
	urlKey := "CROWDSEC_URL"
	if c.CrowdSecCredentials != "" {
		if cfg.MachineID != "" || cfg.Password != "" {
			return nil, c.ErrorAt("CROWDSEC_CREDENTIALS", errors.New("set it or CROWDSEC_MACHINE_ID and CROWDSEC_MACHINE_PASSWORD, not both"))
		}
		cred, err := crowdsec.ReadCredentials(c.CrowdSecCredentials)
		if err != nil {
			return nil, c.ErrorAt("CROWDSEC_CREDENTIALS", err)
		}
		cfg.MachineID, cfg.Password = cred.Login, cred.Password
		if cfg.URL == "" {
			cfg.URL, urlKey = cred.URL, "CROWDSEC_CREDENTIALS"
		}
	}
	switch {
	case cfg.MachineID != "" && cfg.Password == "":
		return nil, c.ErrorAt("CROWDSEC_MACHINE_ID", errors.New("CROWDSEC_MACHINE_PASSWORD is not set"))
	case cfg.MachineID == "" && cfg.Password != "":
		return nil, c.ErrorAt("CROWDSEC_MACHINE_PASSWORD", errors.New("CROWDSEC_MACHINE_ID is not set"))
	}
	if cfg.URL == "" {
		key := "CROWDSEC_BOUNCER_KEY"
		if cfg.MachineID != "" {
			key = "CROWDSEC_MACHINE_ID"
			if c.CrowdSecCredentials != "" {
				key = "CROWDSEC_CREDENTIALS"
			}
		}
		return nil, c.ErrorAt(key, errors.New("CROWDSEC_URL is not set (the Local API, e.g. http://127.0.0.1:8080/)"))
	}
	if _, err := crowdsec.CheckURL(cfg.URL); err != nil {
		return nil, c.ErrorAt(urlKey, err)
	}
	if cfg.MachineID == "" && cfg.BouncerKey == "" {
		return nil, c.ErrorAt("CROWDSEC_URL", errors.New("nothing to do: set CROWDSEC_MACHINE_ID and CROWDSEC_MACHINE_PASSWORD (or CROWDSEC_CREDENTIALS) to push bans, CROWDSEC_BOUNCER_KEY to enforce CrowdSec's decisions"))
	}
	if cfg.BouncerKey != "" && c.Blocker == "command" {
		return nil, c.ErrorAt("CROWDSEC_BOUNCER_KEY", fmt.Errorf(`needs a native blocker: BLOCKER=%q runs commands, which CrowdSec's decisions never do; set BLOCKER="auto"`, c.Blocker))
	}
	return &cfg, nil
}
