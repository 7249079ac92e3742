// Package iptables bans addresses with iptables and ip6tables rules, for
// hosts without nftables.
//
// The blocker owns one chain, PORTSENTRY by default, in the filter table of
// both families. The chain is jumped to from the first rule of INPUT, so a
// ban also cuts connections that an earlier "ESTABLISHED -j ACCEPT" rule of
// the host's firewall would let through, and from the first rule of
// FORWARD (unless Options.InputOnly), so that it covers the traffic this
// host forwards too: a container's service published by DNAT, whose
// packets never reach INPUT. The chain holds one rule per ban:
//
//	-A PORTSENTRY -s 192.0.2.7/32 -j DROP
//
// The programs are run directly, never through a shell, each with -w (wait
// for the xtables lock rather than fail while another tool holds it) and a
// timeout. A Commit is one iptables-restore --noflush run per family with
// queued changes, the rules fed on its standard input: one atomic table
// update however many bans it carries, where one iptables command per rule
// would take minutes for 100 000 bans.
//
// It needs iptables 1.6.2 or later (iptables-restore -w); every
// supported distribution has it.
//
// iptables has no per-rule expiry. Add ignores its TTL and List reports
// every ban with TTL 0: the daemon's ban store keeps the expiry times and
// calls Delete when a ban ends. Bans stay in the kernel when the daemon
// stops (Close removes nothing), so a restart does not open the door.
package iptables

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/enforce/block"
)

// Options configures a Blocker. The zero value is usable.
type Options struct {
	// IPv4 is the iptables program, by name or path; "" means "iptables".
	// "iptables-legacy" or "iptables-nft" pick a backend explicitly. Its
	// restore program is the same name with "-restore" appended, which is
	// how every iptables package names them.
	IPv4 string
	// IPv6 is the ip6tables program; "" means "ip6tables". When it is
	// missing or does not work (a kernel booted with ipv6.disable=1), the
	// blocker still opens, and a Commit carrying IPv6 bans reports why they
	// could not be applied.
	IPv6 string
	// Chain is the chain the blocker owns; "" means DefaultChain. It must
	// not be shared with other rules: the blocker reads every rule of it.
	Chain string
	// Timeout bounds one command; 0 means DefaultTimeout. A hung iptables
	// (a stuck xtables lock) then fails one Commit instead of stalling
	// every later ban.
	Timeout time.Duration
	// InputOnly jumps to the chain from INPUT only: bans then cover
	// traffic for this host's own sockets, not what it forwards. By
	// default FORWARD jumps to it too, so that a banned source also loses
	// the containers this host publishes by DNAT and the hosts it routes
	// for.
	InputOnly bool
}

// Defaults of Options.
const (
	DefaultChain   = "PORTSENTRY"
	DefaultTimeout = time.Minute
)

// Blocker bans addresses with one DROP rule each. It implements
// block.Blocker; its methods are safe for concurrent use.
type Blocker struct {
	run   runner
	chain string
	fams  [2]*family // IPv4, IPv6
	// hooks are the built-in chains that jump to chain: INPUT, and
	// FORWARD unless Options.InputOnly.
	hooks []string

	mu     sync.Mutex
	queue  block.Queue
	closed bool
}

var _ block.Blocker = (*Blocker)(nil)

// family is one of the two iptables programs and what is known of it.
type family struct {
	name    string // "IPv4" or "IPv6", for messages
	bin     string // the program's path
	restore string // its restore program's path
	bits    int    // host prefix length: 32 or 128
	// err says why this family cannot be used; nil when it can.
	err error
}

// runner runs the programs. Tests replace it with a fake that checks the
// exact argument lists and restore input.
type runner interface {
	// run runs argv (argv[0] a path from lookPath) with stdin as its
	// standard input (none when nil) and returns its standard output. A
	// program that exits non-zero yields a *cmdError.
	run(stdin []byte, argv ...string) ([]byte, error)
	// lookPath finds a program by name.
	lookPath(name string) (string, error)
}

// open checks that the programs work and sets up the chain and the jump to
// it. It is New with the runner given.
func open(opts Options, r runner) (*Blocker, error) {
	if opts.IPv4 == "" {
		opts.IPv4 = "iptables"
	}
	if opts.IPv6 == "" {
		opts.IPv6 = "ip6tables"
	}
	if opts.Chain == "" {
		opts.Chain = DefaultChain
	}
	if err := validChain(opts.Chain); err != nil {
		return nil, err
	}
	for _, p := range []string{opts.IPv4, opts.IPv6} {
		// No shell parses these, so this only catches a configuration
		// mistake early: arguments written into the program name, or an
		// option given where the name belongs.
		if strings.HasPrefix(p, "-") || strings.ContainsAny(p, " \t\n") {
			return nil, fmt.Errorf("iptables: invalid program name %q", p)
		}
	}
	b := &Blocker{run: r, chain: opts.Chain, hooks: []string{"INPUT", "FORWARD"}}
	if opts.InputOnly {
		b.hooks = b.hooks[:1]
	}
	b.fams[0] = b.probe("IPv4", opts.IPv4, 32)
	if err := b.fams[0].err; err != nil {
		// Without IPv4 the blocker is of no use; detection tries the next
		// mechanism.
		return nil, err
	}
	b.fams[1] = b.probe("IPv6", opts.IPv6, 128)
	for _, f := range b.fams {
		if f.err != nil {
			continue
		}
		if err := b.ensure(f); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// probe finds one family's programs and checks that the kernel and our
// privileges let them work. The check lists INPUT only, not the whole
// table: our own chain may hold 100 000 rules.
func (b *Blocker) probe(name, prog string, bits int) *family {
	f := &family{name: name, bits: bits}
	bin, err := b.run.lookPath(prog)
	if err != nil {
		f.err = fmt.Errorf("iptables: %s: %w: %w", name, err, block.ErrUnavailable)
		return f
	}
	restore, err := b.run.lookPath(prog + "-restore")
	if err != nil {
		f.err = fmt.Errorf("iptables: %s: %w: %w", name, err, block.ErrUnavailable)
		return f
	}
	f.bin, f.restore = bin, restore
	if _, err := b.run.run(nil, bin, "-w", "-n", "-L", "INPUT"); err != nil {
		f.err = fmt.Errorf("iptables: %s does not work: %w: %w", name, err, block.ErrUnavailable)
	}
	return f
}

// builtin are names a chain of ours must not take: iptables' built-in
// chains and targets.
var builtin = []string{"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING", "ACCEPT", "DROP", "RETURN", "QUEUE", "REJECT", "LOG"}

// validChain accepts what iptables accepts as a user chain name and could
// not be mistaken for an option or break a restore file's line.
func validChain(c string) error {
	ok := len(c) <= 28 && !strings.HasPrefix(c, "-") && !slices.Contains(builtin, strings.ToUpper(c))
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("iptables: invalid chain name %q: use up to 28 letters, digits, '_', '-' or '.', not a built-in chain or target", c)
	}
	return nil
}

// ensure makes the chain exist and INPUT (and FORWARD) jump to it first.
// It is cheap when all are there (one -C per jump), so Commit runs it
// every time: a firewall reload (netfilter-persistent, a hand-run
// "iptables -F") that removed a jump or the chain would otherwise disable
// every later ban without a word.
func (b *Blocker) ensure(f *family) error {
	for _, hook := range b.hooks {
		if err := b.ensureJump(f, hook); err != nil {
			return err
		}
	}
	return nil
}

// ensureJump makes the chain exist and hook jump to it first.
func (b *Blocker) ensureJump(f *family, hook string) error {
	_, err := b.run.run(nil, f.bin, "-w", "-C", hook, "-j", b.chain)
	if err == nil {
		return nil
	}
	if !isExit(err, 1, 2) {
		// Not the "no such rule" (1) or "no such chain" (2) answer: the
		// program did not run properly, and adding a jump now could add
		// a second one.
		return fmt.Errorf("iptables: %s: checking the jump from %s to %s: %w", f.name, hook, b.chain, err)
	}
	// -N fails when the chain exists, which is expected when only the jump
	// went missing; a real failure shows again in -I, reported with it.
	_, nerr := b.run.run(nil, f.bin, "-w", "-N", b.chain)
	if _, err := b.run.run(nil, f.bin, "-w", "-I", hook, "1", "-j", b.chain); err != nil {
		return fmt.Errorf("iptables: %s: setting up %s from %s: %w", f.name, b.chain, hook, errors.Join(nerr, err))
	}
	return nil
}

// Paths says which ways into this host the bans cover: INPUT, and
// FORWARD unless Options.InputOnly.
func (b *Blocker) Paths() block.Paths {
	return block.Paths{Input: true, Forward: len(b.hooks) > 1}
}

// Add queues a ban of addr. The TTL is ignored: iptables rules do not
// expire, the daemon deletes them. An IPv4-mapped address is banned as IPv4.
func (b *Blocker) Add(addr netip.Addr, ttl time.Duration) { b.queue.Put(addr, true) }

// Delete queues the removal of addr's ban.
func (b *Blocker) Delete(addr netip.Addr) { b.queue.Put(addr, false) }

// Commit applies the queued changes: per family with changes, it checks the
// jump (restoring it and the chain if a firewall reload removed them), reads
// the chain, and runs one iptables-restore --noflush with the rules to
// append and delete. Reading first makes Add of a banned address and Delete
// of an unbanned one no-ops, as block.Blocker requires, where iptables
// would add a duplicate or fail the whole batch.
//
// Each family's restore is atomic. An error in one family leaves the other
// applied; the queue is emptied either way.
func (b *Blocker) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	pending, invalid := b.queue.Take()
	if b.closed {
		return errors.New("iptables: Commit after Close")
	}
	var ops [2]map[netip.Addr]bool
	for a, add := range pending {
		i := 0
		if !a.Is4() {
			i = 1
		}
		if ops[i] == nil {
			ops[i] = make(map[netip.Addr]bool)
		}
		ops[i][a] = add
	}
	var errs []error
	for i, f := range b.fams {
		if len(ops[i]) == 0 {
			continue
		}
		if f.err != nil {
			errs = append(errs, fmt.Errorf("%d %s changes not applied: %w", len(ops[i]), f.name, f.err))
			continue
		}
		if err := b.apply(f, ops[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if invalid > 0 {
		errs = append(errs, fmt.Errorf("iptables: %d invalid addresses queued and ignored", invalid))
	}
	return errors.Join(errs...)
}

// apply brings one family's chain in line with ops in one restore run.
func (b *Blocker) apply(f *family, ops map[netip.Addr]bool) error {
	if err := b.ensure(f); err != nil {
		return err
	}
	have, err := b.rules(f)
	if err != nil {
		return err
	}
	input := restoreInput(b.chain, f.bits, ops, have)
	if input == nil {
		return nil
	}
	if _, err := b.run.run(input, f.restore, "--noflush", "-w"); err != nil {
		return fmt.Errorf("iptables: %s: %w", f.name, err)
	}
	return nil
}

// restoreInput is the iptables-restore input applying ops to a chain that
// holds have (address → number of rules), or nil when nothing changes. The
// addresses are sorted so that the input, and a failure's line number, do
// not depend on map order.
//
// The chain is not declared (":PORTSENTRY - [0:0]"): with --noflush,
// declaring an existing user chain flushes it, every ban with it.
func restoreInput(chain string, bits int, ops map[netip.Addr]bool, have map[netip.Addr]int) []byte {
	addrs := make([]netip.Addr, 0, len(ops))
	for a := range ops {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	// Appended by hand, not with fmt: a 100 000-ban restore at start-up
	// should cost the kernel's time, not ours.
	suffix := "/" + strconv.Itoa(bits) + " -j DROP\n"
	var buf []byte
	rule := func(op string, a netip.Addr) {
		buf = append(buf, op...)
		buf = append(buf, chain...)
		buf = append(buf, " -s "...)
		buf = a.AppendTo(buf)
		buf = append(buf, suffix...)
	}
	buf = append(buf, "*filter\n"...)
	n := 0
	for _, a := range addrs {
		switch {
		case ops[a] && have[a] == 0:
			rule("-A ", a)
			n++
		case !ops[a]:
			// A duplicate made by hand would keep the ban alive: remove
			// every copy.
			for range have[a] {
				rule("-D ", a)
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	return append(buf, "COMMIT\n"...)
}

// rules reads the bans one family's chain holds.
func (b *Blocker) rules(f *family) (map[netip.Addr]int, error) {
	out, err := b.run.run(nil, f.bin, "-w", "-S", b.chain)
	if err != nil {
		return nil, fmt.Errorf("iptables: %s: listing %s: %w", f.name, b.chain, err)
	}
	return parseRules(out, b.chain, f.bits), nil
}

// parseRules reads `iptables -S CHAIN` output: address → number of ban
// rules for it. A ban rule is exactly "-A CHAIN -s ADDR/32 -j DROP" (/128
// for IPv6); other lines ("-N CHAIN", rules someone else put there,
// iptables-nft's "# Warning" comments) are skipped, not errors, because the
// chain is read before every Commit and one odd rule must not stop banning.
func parseRules(out []byte, chain string, bits int) map[netip.Addr]int {
	have := make(map[netip.Addr]int)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || f[0] != "-A" || f[1] != chain || f[2] != "-s" || f[4] != "-j" || f[5] != "DROP" {
			continue
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil || p.Bits() != bits || p.Addr().Zone() != "" || p.Addr().Is4() != (bits == 32) {
			continue
		}
		have[p.Addr()]++
	}
	return have
}

// List reports the bans of both families, IPv4 first, each sorted, with TTL
// 0: iptables keeps no expiry. A family that cannot be used holds no bans
// of ours and is left out.
func (b *Blocker) List() ([]block.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("iptables: List after Close")
	}
	var entries []block.Entry
	for _, f := range b.fams {
		if f.err != nil {
			continue
		}
		have, err := b.rules(f)
		if err != nil {
			return nil, err
		}
		start := len(entries)
		for a := range have {
			entries = append(entries, block.Entry{Addr: a})
		}
		slices.SortFunc(entries[start:], func(x, y block.Entry) int { return x.Addr.Compare(y.Addr) })
	}
	return entries, nil
}

// Close ends the blocker's use. The rules stay: bans outlive the daemon.
func (b *Blocker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}
