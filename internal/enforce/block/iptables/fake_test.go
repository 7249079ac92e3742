package iptables

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"slices"
	"strings"
)

// fakeTables stands in for iptables and ip6tables: it keeps INPUT, FORWARD and user
// chains per family, answers the commands the blocker runs as the real
// programs do (exit codes and output format), and records every command.
type fakeTables struct {
	fam     map[string]*fakeFamily // by program name: "iptables", "ip6tables"
	missing map[string]bool        // programs lookPath does not find
	calls   []call
	// fail makes the command whose argv (joined by spaces) is the key exit
	// with that code, once.
	fail map[string]int
}

type fakeFamily struct {
	broken bool                // "-L INPUT" fails, as without kernel support
	chains map[string][]string // chain → rule specs; INPUT and FORWARD always present
}

// call is one command the blocker ran.
type call struct {
	Argv  string // joined by spaces
	Stdin string
}

func newFake() *fakeTables {
	return &fakeTables{
		fam: map[string]*fakeFamily{
			"iptables":  {chains: map[string][]string{"INPUT": nil, "FORWARD": nil}},
			"ip6tables": {chains: map[string][]string{"INPUT": nil, "FORWARD": nil}},
		},
		missing: map[string]bool{},
		fail:    map[string]int{},
	}
}

func (f *fakeTables) lookPath(name string) (string, error) {
	if f.missing[name] {
		return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
	}
	return "/usr/sbin/" + name, nil
}

// exit makes the error the exec runner returns for a non-zero exit.
func exit(argv []string, code int, msg string) error {
	return &cmdError{argv: argv, code: code, stderr: msg, err: fmt.Errorf("exit status %d", code)}
}

func (f *fakeTables) run(stdin []byte, argv ...string) ([]byte, error) {
	joined := strings.Join(argv, " ")
	f.calls = append(f.calls, call{Argv: joined, Stdin: string(stdin)})
	if code, ok := f.fail[joined]; ok {
		delete(f.fail, joined)
		return nil, exit(argv, code, "injected failure")
	}
	prog := path.Base(argv[0])
	if restore, ok := strings.CutSuffix(prog, "-restore"); ok {
		fam := f.fam[restore]
		if fam == nil || !slices.Equal(argv[1:], []string{"--noflush", "-w"}) {
			return nil, fmt.Errorf("fake: unexpected command %q", joined)
		}
		return nil, fam.restore(argv, stdin)
	}
	fam := f.fam[prog]
	if fam == nil {
		return nil, fmt.Errorf("fake: unknown program %q", prog)
	}
	if len(argv) < 3 || argv[1] != "-w" {
		return nil, fmt.Errorf("fake: command without -w: %q", joined)
	}
	args := argv[2:]
	switch {
	case slices.Equal(args, []string{"-n", "-L", "INPUT"}):
		if fam.broken {
			return nil, exit(argv, 3, "can't initialize iptables table `filter': Table does not exist")
		}
		return []byte("Chain INPUT (policy ACCEPT)\ntarget     prot opt source               destination\n"), nil
	case len(args) == 4 && args[0] == "-C" && builtinHook(args[1]) && args[2] == "-j":
		if _, ok := fam.chains[args[3]]; !ok {
			return nil, exit(argv, 2, fmt.Sprintf("Chain '%s' does not exist", args[3]))
		}
		if !slices.Contains(fam.chains[args[1]], "-j "+args[3]) {
			return nil, exit(argv, 1, "Bad rule (does a matching rule exist in that chain?).")
		}
		return nil, nil
	case len(args) == 2 && args[0] == "-N":
		if _, ok := fam.chains[args[1]]; ok {
			return nil, exit(argv, 1, "Chain already exists.")
		}
		fam.chains[args[1]] = nil
		return nil, nil
	case len(args) == 5 && args[0] == "-I" && builtinHook(args[1]) && args[2] == "1" && args[3] == "-j":
		if _, ok := fam.chains[args[4]]; !ok {
			return nil, exit(argv, 2, "Couldn't load target")
		}
		fam.chains[args[1]] = append([]string{"-j " + args[4]}, fam.chains[args[1]]...)
		return nil, nil
	case len(args) == 2 && args[0] == "-S":
		rules, ok := fam.chains[args[1]]
		if !ok {
			return nil, exit(argv, 1, "No chain/target/match by that name.")
		}
		var out bytes.Buffer
		fmt.Fprintf(&out, "-N %s\n", args[1])
		for _, r := range rules {
			fmt.Fprintf(&out, "-A %s %s\n", args[1], r)
		}
		return out.Bytes(), nil
	}
	return nil, fmt.Errorf("fake: unexpected command %q", joined)
}

// builtinHook reports whether c is one of the built-in chains the blocker
// jumps from.
func builtinHook(c string) bool { return c == "INPUT" || c == "FORWARD" }

// restore applies -A and -D lines between "*filter" and "COMMIT", all or
// nothing, as iptables-restore does.
func (fam *fakeFamily) restore(argv []string, stdin []byte) error {
	chains := make(map[string][]string, len(fam.chains))
	for c, r := range fam.chains {
		chains[c] = slices.Clone(r)
	}
	sc := bufio.NewScanner(bytes.NewReader(stdin))
	n, table, committed := 0, false, false
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case committed:
			return exit(argv, 1, fmt.Sprintf("line %d: text after COMMIT", n))
		case line == "*filter" && !table:
			table = true
		case line == "COMMIT" && table:
			committed = true
		case table && (strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, "-D ")):
			chain, spec, _ := strings.Cut(line[3:], " ")
			rules, ok := chains[chain]
			if !ok {
				return exit(argv, 1, fmt.Sprintf("line %d failed: chain %s does not exist", n, chain))
			}
			if line[1] == 'A' {
				chains[chain] = append(rules, spec)
				continue
			}
			i := slices.Index(rules, spec)
			if i < 0 {
				return exit(argv, 1, fmt.Sprintf("line %d failed: Bad rule (does a matching rule exist in that chain?).", n))
			}
			chains[chain] = slices.Delete(rules, i, i+1)
		default:
			return exit(argv, 2, fmt.Sprintf("line %d: unexpected %q", n, line))
		}
	}
	if !committed {
		return exit(argv, 1, "no COMMIT line")
	}
	fam.chains = chains
	return nil
}

// argvs returns the commands run since the last call, argv only.
func (f *fakeTables) argvs() []string {
	var out []string
	for _, c := range f.calls {
		out = append(out, c.Argv)
	}
	f.calls = nil
	return out
}
