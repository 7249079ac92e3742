package crowdsec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/portsentry-go/portsentry/internal/config"
)

// Credentials are a machine's, as `cscli machines add NAME -a -f FILE`
// writes them (CROWDSEC_CREDENTIALS):
//
//	url: http://127.0.0.1:8080
//	login: portsentry
//	password: 8f3…
type Credentials struct {
	URL, Login, Password string
}

// maxCredentials bounds the file read: it is three short lines.
const maxCredentials = 64 << 10

// ReadCredentials reads a credentials file. Errors name the file and line.
func ReadCredentials(path string) (Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return Credentials{}, &config.Error{File: path, Err: err}
	}
	defer f.Close()
	return ParseCredentials(io.LimitReader(f, maxCredentials), path)
}

// ParseCredentials reads the YAML subset cscli writes: "key: value"
// lines, values plain or quoted, comments and blank lines. Unknown keys
// are ignored (newer cscli versions may add some); login and password
// are required.
func ParseCredentials(r io.Reader, name string) (Credentials, error) {
	var c Credentials
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxCredentials)
	n := 0
	seen := map[string]int{}
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' || trimmed == "---" {
			continue
		}
		if trimmed != line {
			continue // nested under another key: not one of ours
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return c, &config.Error{File: name, Line: n, Err: errors.New(`want "key: value"`)}
		}
		k = strings.TrimSpace(k)
		v, err := yamlScalar(strings.TrimSpace(v))
		if err == nil && strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			err = errors.New("control character in the value")
		}
		if err != nil {
			return c, &config.Error{File: name, Line: n, Key: k, Err: err}
		}
		var dst *string
		switch k {
		case "url":
			dst = &c.URL
		case "login":
			dst = &c.Login
		case "password":
			dst = &c.Password
		default:
			continue
		}
		if first, dup := seen[k]; dup {
			return c, &config.Error{File: name, Line: n, Key: k, Err: fmt.Errorf("set twice (first on line %d)", first)}
		}
		seen[k] = n
		*dst = v
	}
	if err := sc.Err(); err != nil {
		return c, &config.Error{File: name, Line: n + 1, Err: err}
	}
	for _, k := range []struct {
		name string
		v    string
	}{{"login", c.Login}, {"password", c.Password}} {
		if k.v == "" {
			return c, &config.Error{File: name, Err: fmt.Errorf("no %s (want the file `cscli machines add NAME -a -f FILE` writes)", k.name)}
		}
	}
	return c, nil
}

// yamlScalar reads a plain or quoted YAML scalar on one line, with a
// trailing comment after a plain one.
func yamlScalar(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	switch v[0] {
	case '"':
		end := strings.LastIndexByte(v, '"')
		if end == 0 {
			return "", errors.New("missing closing \"")
		}
		if strings.Contains(v[1:end], `\`) {
			return "", errors.New("escapes in a quoted value are not supported")
		}
		if rest := strings.TrimSpace(v[end+1:]); rest != "" && rest[0] != '#' {
			return "", fmt.Errorf("text after the closing quote: %q", rest)
		}
		return v[1:end], nil
	case '\'':
		end := strings.LastIndexByte(v, '\'')
		if end == 0 {
			return "", errors.New("missing closing '")
		}
		if rest := strings.TrimSpace(v[end+1:]); rest != "" && rest[0] != '#' {
			return "", fmt.Errorf("text after the closing quote: %q", rest)
		}
		return strings.ReplaceAll(v[1:end], "''", "'"), nil
	case '|', '>', '[', '{', '&', '*', '!':
		return "", errors.New("only plain or quoted values are supported")
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return v, nil
}
