package selftest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// confLine is one KEY="value" line of the test configuration.
type confLine struct {
	key, val string
	// optional keys are left out when the binary under test does not
	// know them (it is older than the key).
	optional bool
}

// nftTable is the table the test's KILL_ROUTE adds its drop rules to, in
// T only; the native nftables blocker uses its own (inet portsentry).
const nftTable = "portsentry_selftest"

// blockCommands chooses KILL_ROUTE and KILL_ROUTE6 for the daemon in T, from
// the tools installed: nft (the tutorials' modern choice), else iptables,
// else ip route blackhole. They run inside T, as the daemon does. how names
// the choice; all empty when no tool is installed.
func (r *runner) blockCommands(ctx context.Context, dir string, t Netns) (route, route6, how string) {
	if nft, err := r.sys.LookPath("nft"); err == nil {
		setup := filepath.Join(dir, "block.nft")
		rules := "table inet " + nftTable + " {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
		if err := os.WriteFile(setup, []byte(rules), 0o600); err == nil {
			if _, err := r.sys.Output(ctx, t, []string{nft, "-f", setup}); err == nil {
				rule := nft + " add rule inet " + nftTable + " input "
				return rule + "ip saddr $TARGET$ drop", rule + "ip6 saddr $TARGET$ drop", "nft (KILL_ROUTE)"
			}
		}
	}
	if ipt, err := r.sys.LookPath("iptables"); err == nil {
		route = ipt + " -I INPUT -s $TARGET$ -j DROP"
		if ip6t, err := r.sys.LookPath("ip6tables"); err == nil {
			route6 = ip6t + " -I INPUT -s $TARGET$ -j DROP"
		}
		return route, route6, "iptables (KILL_ROUTE)"
	}
	if ip, err := r.sys.LookPath("ip"); err == nil {
		return ip + " route add blackhole $TARGET$", ip + " -6 route add blackhole $TARGET$", "ip route blackhole (KILL_ROUTE)"
	}
	return "", "", ""
}

// configure writes the throwaway portsentry.conf into dir and has
// `portsentry check` accept it, leaving out the optional keys the binary
// does not know. It returns the file and a description of the settings;
// on error, the description is the remedy.
func (r *runner) configure(ctx context.Context, bin, dir string, t Netns) (string, string, error) {
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := os.WriteFile(p("portsentry.ignore"), []byte("127.0.0.1\n::1\n"), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(p("hosts.deny"), []byte("# portsentry selftest\n"), 0o600); err != nil {
		return "", "", err
	}
	route, route6, how := r.blockCommands(ctx, dir, t)
	lines := []confLine{
		{key: "IGNORE_FILE", val: p("portsentry.ignore")},
		{key: "HISTORY_FILE", val: p("portsentry.history")},
		{key: "BLOCKED_FILE", val: p("portsentry.blocked")},
		{key: "HOSTS_DENY_FILE", val: p("hosts.deny")},
		{key: "RESOLVE_HOST", val: "0"},
		{key: "SCAN_TRIGGER", val: "0"},
		{key: "BLOCK_TCP", val: "1"},
		{key: "BLOCK_UDP", val: "1"},
		{key: "KILL_ROUTE", val: route},
		{key: "KILL_ROUTE6", val: route6},
		// A daemon with native blockers uses them instead of KILL_ROUTE.
		{key: "BLOCKER", val: "auto", optional: true},
		{key: "BAN_FILE", val: p("portsentry.bans"), optional: true},
		// Never the system's socket: a real daemon may be using it.
		{key: "CONTROL_SOCKET", val: p("control.sock"), optional: true},
	}
	conf := p("portsentry.conf")
	var dropped []string
	for {
		if err := writeConf(conf, lines); err != nil {
			return "", "", err
		}
		out, err := r.sys.Output(ctx, nil, []string{bin, "check", "-c", conf, "-atcp", "-audp"})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", "", errors.New(timeoutWords(ctx.Err()))
		}
		i := refusedLine(string(out), conf, lines)
		if i < 0 || !lines[i].optional {
			return "", "portsentry check must accept the generated configuration; see " + conf + " with -keep",
				fmt.Errorf("portsentry check refused it: %s", strings.TrimSpace(string(out)))
		}
		dropped = append(dropped, lines[i].key)
		lines = append(lines[:i], lines[i+1:]...)
	}

	var blocker string
	for _, l := range lines {
		if l.key == "BLOCKER" {
			blocker = "BLOCKER=auto"
			if how != "" {
				blocker += ", else " + how
			}
		}
	}
	if blocker == "" {
		if how == "" {
			return "", "install nftables (apt-get install nftables) or iptables, or use a portsentry with BLOCKER",
				errors.New("no way to block: no nft, iptables or ip program, and this portsentry has no BLOCKER key")
		}
		blocker = how
	}
	detail := "accepted by portsentry check: -atcp -audp, SCAN_TRIGGER=0, BLOCK_TCP=1, BLOCK_UDP=1, blocking with " + blocker
	if len(dropped) > 0 {
		detail += "; left out " + strings.Join(dropped, ", ") + " (unknown to this binary)"
	}
	return conf, detail, nil
}

// writeConf writes the configuration; a key with an empty value is left
// out.
func writeConf(path string, lines []confLine) error {
	var b strings.Builder
	b.WriteString("# portsentry selftest: a throwaway configuration, used inside a private network namespace\n")
	for _, l := range lines {
		if l.val != "" {
			fmt.Fprintf(&b, "%s=\"%s\"\n", l.key, l.val)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// refusedLine finds which of lines `portsentry check` complained about: by
// the line number after the file name ("conf:12: …"), else by a key named
// in the output. -1 when neither.
func refusedLine(out, conf string, lines []confLine) int {
	if m := regexp.MustCompile(regexp.QuoteMeta(conf) + `:(\d+):`).FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		// Line 1 is the comment; then one line per key with a value.
		at := 1
		for i, l := range lines {
			if l.val == "" {
				continue
			}
			at++
			if at == n {
				return i
			}
		}
	}
	for i, l := range lines {
		if regexp.MustCompile(`\b` + l.key + `\b`).MatchString(out) {
			return i
		}
	}
	return -1
}
