package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/netns"
	"github.com/portsentry-go/portsentry/internal/netns/netnstest"
	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

// CrowdSec end to end, both directions, against Debian's own crowdsec
// package: its Local API (crowdsec -no-cs, SQLite) runs alone on T's
// loopback, offline (its online_client section removed from a copy of
// the package's config.yaml), and is driven with the package's cscli.
// The package's post-install script would register with CrowdSec's
// central API, which is not reachable here, so the package is unpacked
// (apt-get download, dpkg-deb -x), not installed.

// crowdsecPoll is the daemon's CROWDSEC_POLL in this test, in seconds.
const crowdsecPoll = 2

// crowdsecPackage returns the directory holding Debian's crowdsec
// package unpacked: .cache/debian-crowdsec, where scripts/test-deps
// (run by make test and .ci/run) extracts it, or unpacked here when
// missing. It skips the test when the package cannot be obtained.
func crowdsecPackage(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PORTSENTRY_CROWDSEC_DIR")
	if dir == "" {
		dir = filepath.Join(repoDir, ".cache", "debian-crowdsec")
	}
	if _, err := os.Stat(filepath.Join(dir, "usr", "bin", "crowdsec")); err == nil {
		return dir
	}
	tmp := t.TempDir()
	os.Chmod(tmp, 0o777) // apt-get download drops privileges to _apt when it can
	dl := exec.Command("apt-get", "download", "crowdsec")
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		netnstest.SkipOrFail(t, fmt.Sprintf("needs Debian's crowdsec package, which could not be downloaded (apt-get download crowdsec: %v: %s); scripts/test-deps extracts it into %s", err, bytes.TrimSpace(out), dir))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "crowdsec_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download crowdsec left %q", debs)
	}
	dir = filepath.Join(tmp, "x")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", debs[0], err, out)
	}
	return dir
}

// lapi is a CrowdSec Local API running in a namespace.
type lapi struct {
	ns     *netns.NS
	pkg    string // the unpacked package
	dir    string // its configuration and data
	config string // its config.yaml
	url    string
	out    syncbuf.Buffer
}

// startLAPI runs the package's crowdsec as a Local API alone (-no-cs) on
// ns's loopback, its state in a directory of the test's, and waits until
// it listens.
func startLAPI(t *testing.T, ns *netns.NS, pkg string) *lapi {
	t.Helper()
	l := &lapi{ns: ns, pkg: pkg, dir: t.TempDir(), url: "http://127.0.0.1:8080"}
	for _, d := range []string{"etc", "data", "hub", "log"} {
		if err := os.MkdirAll(filepath.Join(l.dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"profiles.yaml", "simulation.yaml"} {
		writeFile(t, filepath.Join(l.dir, "etc", f), readFile(t, filepath.Join(pkg, "etc", "crowdsec", f)))
	}
	writeFile(t, filepath.Join(l.dir, "hub", ".index.json"), "{}")
	l.config = filepath.Join(l.dir, "etc", "config.yaml")
	writeFile(t, l.config, offlineConfig(t, readFile(t, filepath.Join(pkg, "etc", "crowdsec", "config.yaml")), l.dir, pkg))

	cmd := ns.Command(filepath.Join(pkg, "usr", "bin", "crowdsec"), "-c", l.config, "-no-cs")
	cmd.Stdout, cmd.Stderr = &l.out, &l.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting crowdsec: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("crowdsec's output:\n%s", l.out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(l.out.String(), "CrowdSec Local API listening on 127.0.0.1:8080") {
		select {
		case <-done:
			t.Fatalf("crowdsec exited:\n%s", l.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("crowdsec's Local API did not start:\n%s", l.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The machine cscli itself uses for decisions and alerts.
	l.cscli(t, "machines", "add", "cscli", "--auto", "-f", filepath.Join(l.dir, "etc", "local_api_credentials.yaml"))
	return l
}

// offlineConfig is the package's config.yaml with its paths in dir, its
// log on standard output, no Prometheus listener, and no online_client:
// the Local API alone, offline.
func offlineConfig(t *testing.T, orig, dir, pkg string) string {
	t.Helper()
	var out []string
	skip := -1 // indentation of the section being removed
	for _, line := range strings.Split(orig, "\n") {
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if skip >= 0 {
			if strings.TrimSpace(line) == "" || indent > skip {
				continue
			}
			skip = -1
		}
		if strings.TrimSpace(line) != "" && strings.HasPrefix(strings.TrimSpace(line), "online_client:") {
			skip = indent
			continue
		}
		out = append(out, line)
	}
	s := strings.Join(out, "\n")
	for _, r := range [][2]string{
		{"daemonize: true", "daemonize: false"},
		{"log_media: file", "log_media: stdout"},
		{"/etc/crowdsec/", dir + "/etc/"},
		{"/var/lib/crowdsec/data/", dir + "/data/"},
		{"/var/lib/crowdsec/hub/", dir + "/hub/"},
		{"/usr/lib/crowdsec/plugins/", pkg + "/usr/lib/crowdsec/plugins/"},
		{"/var/log/", dir + "/log/"},
		{"prometheus:\n  enabled: true", "prometheus:\n  enabled: false"},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("crowdsec's config.yaml has no %q: the package changed; adapt offlineConfig\n%s", r[0], orig)
		}
		s = strings.ReplaceAll(s, r[0], r[1])
	}
	if strings.Contains(s, "online_client") || !strings.Contains(s, "listen_uri: 127.0.0.1:8080") {
		t.Fatalf("offline config:\n%s", s)
	}
	return s
}

// cscli runs the package's cscli against the Local API and returns its
// standard output.
func (l *lapi) cscli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := l.ns.Command(filepath.Join(l.pkg, "usr", "bin", "cscli"), append([]string{"-c", l.config}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cscli %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// csDecision is a decision of `cscli decisions list -o json`.
type csDecision struct {
	Origin, Scenario, Scope, Value, Type, Duration string
}

// decisions lists the Local API's active decisions as cscli shows them
// by default.
func (l *lapi) decisions(t *testing.T) []csDecision {
	t.Helper()
	out := l.cscli(t, "decisions", "list", "-o", "json")
	var alerts []struct {
		MachineID string       `json:"machine_id"`
		Decisions []csDecision `json:"decisions"`
	}
	if err := json.Unmarshal([]byte(out), &alerts); err != nil {
		t.Fatalf("cscli decisions list -o json: %v\n%s", err, out)
	}
	var ds []csDecision
	for _, a := range alerts {
		ds = append(ds, a.Decisions...)
	}
	return ds
}

// crowdStatus is portsentry status with its runs of spaces squeezed.
func crowdStatus(t *testing.T, k *stLab) string {
	t.Helper()
	return strings.Join(strings.Fields(k.mustCLI(t, "status")), " ")
}

// TestCrowdSec: the real daemon in T, with the nftables blocker and
// CROWDSEC_* pointing at Debian's crowdsec on T's loopback. nmap from S
// is banned by the daemon, and the ban appears in `cscli decisions list`
// with portsentry's scenario and about BAN_TIME left. `cscli decisions
// add -i F` puts F in the daemon's kernel ban set within one poll
// interval (F's connections then fail, and portsentry list says where
// the ban came from); `cscli decisions delete -i F` lifts it within one
// more. A decision against an address on T's ignore list, or a peer of T
// (a host with an established connection), is never enforced.
func TestCrowdSec(t *testing.T) {
	t.Parallel()
	pkg := crowdsecPackage(t)
	k := newStBase(t, stAdvanced, nativeTable)
	l := startLAPI(t, k.T.ns, pkg)
	creds := k.c.path("crowdsec-credentials.yaml")
	l.cscli(t, "machines", "add", "portsentry-e2e", "--auto", "-f", creds)
	const key = "e2e-bouncer-key-0123456789abcdef"
	l.cscli(t, "bouncers", "add", "portsentry-e2e", "-k", key)

	ignored := netip.MustParseAddr("10.231.0.200")
	k.c.set("BLOCKER", "nftables")
	k.c.set("KILL_ROUTE", "")
	k.c.set("BAN_TIME", "3600")
	k.c.set("CROWDSEC_CREDENTIALS", creds) // url, login, password, as cscli wrote them
	k.c.set("CROWDSEC_BOUNCER_KEY", key)
	k.c.set("CROWDSEC_POLL", fmt.Sprint(crowdsecPoll))
	k.c.set("METRICS_ADDRESS", metricsAddr)
	writeFile(t, k.c.path("portsentry.ignore"), "# e2e\n127.0.0.1\n::1\n"+ignored.String()+"\n")
	k.run(t, nil)
	k.d.waitFor(t, "CrowdSec decisions at start: 0 addresses banned", logWait)

	// Our ban, in CrowdSec.
	k.nmapXML(t, k.S, "-sS", "-p", "1-100", k.T.v4.String())
	k.d.waitFor(t, nativeLine(k.S.v4, "for 1h0m0s"), logWait)
	var ours csDecision
	deadline := time.Now().Add(logWait)
	for ours.Value == "" {
		for _, d := range l.decisions(t) {
			if d.Value == k.S.v4.String() {
				ours = d
			}
		}
		if ours.Value == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no decision for %s in cscli decisions list:\n%s\ndaemon:\n%s", k.S.v4, l.cscli(t, "decisions", "list"), k.d.stdout.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	left, err := time.ParseDuration(ours.Duration)
	if ours.Scenario != "portsentry/scan" || ours.Type != "ban" || ours.Scope != "Ip" || ours.Origin != "crowdsec" || err != nil || left > time.Hour || left < 55*time.Minute {
		t.Errorf("our ban in CrowdSec: %+v, want a ban of scope Ip, scenario portsentry/scan, about 1h left", ours)
	}

	// CrowdSec's decision, in our kernel set within one poll interval.
	// (F has not talked to T yet: a peer would be spared, see below.)
	l.cscli(t, "decisions", "add", "-i", k.F.v4.String(), "-d", "2h", "-R", "e2e decision")
	added := time.Now()
	// The daemon's line is written as the ban enters the kernel set (one
	// netlink batch before it): its time stamp, not how soon this test
	// reads the set back, tells how long the decision took.
	line := k.d.waitFor(t, fmt.Sprintf(`attackalert: Host %s banned on "crowdsec"'s word (reason "e2e decision") for 1h59m`, k.F.v4), 3*crowdsecPoll*time.Second)
	at, err := time.Parse("2006-01-02T15:04:05.000-0700", strings.Fields(line)[0])
	if err != nil {
		t.Fatalf("time stamp of %q: %v", line, err)
	}
	took := at.Sub(added)
	t.Logf("cscli decisions add -i %s: banned by the daemon %v after cscli returned (CROWDSEC_POLL=%ds)", k.F.v4, took.Round(time.Millisecond), crowdsecPoll)
	if limit := crowdsecPoll*time.Second + 500*time.Millisecond; took > limit {
		t.Errorf("the decision took %v to reach the kernel, want within one poll interval (%v, with %v for the request)", took, crowdsecPoll*time.Second, limit-crowdsecPoll*time.Second)
	}
	e, ok := k.elem(t, k.F.v4)
	if !ok || e.Timeout < 119*time.Minute || e.Timeout > 2*time.Hour {
		t.Errorf("F in the kernel's ban set: %v, for %v; want the decision's 2h", ok, e.Timeout)
	}
	if reachesWeb(t, k.F, k.T.v4) {
		t.Error("F still reaches T's web service under CrowdSec's ban")
	}
	list := k.mustCLI(t, "list")
	if re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(k.F.v4.String()) + `\s+e2e decision\s+-\s+.*\s+crowdsec$`); !re.MatchString(list) {
		t.Errorf("portsentry list does not show F's ban from crowdsec (%s):\n%s", re, list)
	}
	if re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(k.S.v4.String()) + `\s+TCP SYN/Normal scan\s+.*\s+local$`); !re.MatchString(list) {
		t.Errorf("portsentry list does not show S's own ban as local (%s):\n%s", re, list)
	}
	// portsentry status: the pushed ban and the applied decisions, F's
	// and S's own (back from CrowdSec: applied over the local ban,
	// which it leaves as it is).
	status := crowdStatus(t, k)
	for _, want := range []string{
		"CrowdSec: Local API http://127.0.0.1:8080/",
		"push: connected, last push ",
		"1 alerts pushed, 0 waiting, 0 dropped (queue full)",
		"pull: connected, last poll ",
		"decisions: 2 read, 2 applied, 0 lifted, 0 refused by local policy, 0 skipped (not an IP ban), 0 failed; 2 followed",
	} {
		if !strings.Contains(status, want) {
			t.Errorf("portsentry status lacks %q:\n%s", want, status)
		}
	}
	if ls := fileLines(t, k.c.path("portsentry.history")); len(ls) != 1 || !strings.Contains(ls[0], k.S.v4.String()) {
		t.Errorf("history %q, want S's record alone (fail2ban must not act on CrowdSec's word)", ls)
	}

	// Deleted in CrowdSec: lifted here.
	l.cscli(t, "decisions", "delete", "-i", k.F.v4.String())
	k.waitGone(t, k.F.v4, 3*crowdsecPoll*time.Second)
	k.d.waitFor(t, fmt.Sprintf("attackalert: Host %s unblocked: withdrawn by crowdsec", k.F.v4), logWait)
	if !reachesWeb(t, k.F, k.T.v4) {
		t.Error("F cannot reach T's web service after the decision was deleted")
	}

	// Local policy wins: an ignore-listed address is never banned, nor
	// a peer (F, now that it has an established connection with T).
	l.cscli(t, "decisions", "add", "-i", ignored.String(), "-d", "1h")
	k.d.waitFor(t, "1 refused by local policy", 3*crowdsecPoll*time.Second)
	l.cscli(t, "decisions", "add", "-i", k.F.v4.String(), "-d", "1h")
	k.d.waitForN(t, "1 refused by local policy", 2, 3*crowdsecPoll*time.Second)
	for _, a := range []netip.Addr{ignored, k.F.v4} {
		if _, ok := k.elem(t, a); ok {
			t.Errorf("%s was banned on CrowdSec's word", a)
		}
	}
	// Status and metrics say why.
	status = crowdStatus(t, k)
	if want := "decisions: 4 read, 2 applied, 1 lifted, 2 refused by local policy: 1 peer (an established connection), 1 protected (ignore list, this host, its infrastructure), 0 skipped (not an IP ban), 0 failed; 3 followed"; !strings.Contains(status, want) {
		t.Errorf("portsentry status lacks %q:\n%s", want, status)
	}
	m := scrape(t, k.T.ns)
	for name, want := range map[string]float64{
		"portsentry_crowdsec_push_connected":                           1,
		"portsentry_crowdsec_alerts_pushed_total":                      1,
		"portsentry_crowdsec_alerts_dropped_total":                     0,
		"portsentry_crowdsec_pull_connected":                           1,
		"portsentry_crowdsec_decisions_pulled_total":                   4,
		"portsentry_crowdsec_decisions_applied_total":                  2,
		"portsentry_crowdsec_decisions_lifted_total":                   1,
		`portsentry_crowdsec_decisions_refused_total{why="peer"}`:      1,
		`portsentry_crowdsec_decisions_refused_total{why="protected"}`: 1,
		`portsentry_imported_bans_total{origin="crowdsec"}`:            1,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("metrics: %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if last := m["portsentry_crowdsec_last_poll_timestamp_seconds"]; time.Since(time.Unix(int64(last), 0)) > 3*crowdsecPoll*time.Second {
		t.Errorf("metrics: last poll at %v, want within the last few polls", time.Unix(int64(last), 0))
	}

	// S's ban, still local and in force: its own decision came back
	// from the stream without changing it.
	if _, ok := k.elem(t, k.S.v4); !ok {
		t.Error("S's ban is gone")
	}
}
