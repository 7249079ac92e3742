package nft

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// fakeConn is an in-memory nftables with the kernel semantics the blocker
// relies on: a batch applies whole or not at all; adding an element that
// is there is a no-op (or, with updates, replaces its timeout); deleting
// one that is not there fails the batch (ENOENT); elements expire by the
// fake's clock; a set's size is enforced (ENFILE); interval sets refuse
// overlapping ranges (EEXIST). It lets the blocker's logic be tested
// without root; the real-kernel tests check the same semantics for real.
type fakeConn struct {
	now      func() time.Time
	updates  bool  // replace timeouts on re-add, as recent kernels do
	failNext error // the next Flush fails with it, applying nothing
	st       fakeState
	pending  []func(*fakeState) error
	flushes  int // batches applied or failed
}

type fakeState struct {
	table  bool
	sets   map[string]*fakeSet
	chains map[string][]*nftables.Rule
	defs   map[string]nftables.Chain // the chains as created
}

type fakeSet struct {
	def   nftables.Set
	elems map[string]fakeElem // by key, plus "/end" for interval ends
}

type fakeElem struct {
	key     []byte
	end     bool
	timeout time.Duration
	expires time.Time // zero: never
}

var _ conn = (*fakeConn)(nil)

func newFake() *fakeConn {
	return &fakeConn{now: time.Now, st: fakeState{sets: map[string]*fakeSet{},
		chains: map[string][]*nftables.Rule{}, defs: map[string]nftables.Chain{}}}
}

func errno(e unix.Errno, format string, args ...any) error {
	return fmt.Errorf("fake: %s: %w", fmt.Sprintf(format, args...), e)
}

func (st *fakeState) clone() fakeState {
	c := fakeState{table: st.table, sets: map[string]*fakeSet{}, chains: map[string][]*nftables.Rule{},
		defs: maps.Clone(st.defs)}
	for n, s := range st.sets {
		c.sets[n] = &fakeSet{def: s.def, elems: maps.Clone(s.elems)}
	}
	for n, r := range st.chains {
		c.chains[n] = slices.Clone(r)
	}
	return c
}

func (f *fakeConn) queue(op func(*fakeState) error) { f.pending = append(f.pending, op) }

func (f *fakeConn) set(st *fakeState, name string) (*fakeSet, error) {
	s, ok := st.sets[name]
	if !ok {
		return nil, errno(unix.ENOENT, "no set %s", name)
	}
	return s, nil
}

func (f *fakeConn) live(e fakeElem) bool { return e.expires.IsZero() || f.now().Before(e.expires) }

func elemID(key []byte, end bool) string {
	if end {
		return string(key) + "/end"
	}
	return string(key)
}

func (f *fakeConn) AddTable(t *nftables.Table) *nftables.Table {
	f.queue(func(st *fakeState) error { st.table = true; return nil })
	return t
}

// hookOf describes a chain's hook for comparisons.
func hookOf(c nftables.Chain) string {
	if c.Hooknum == nil || c.Priority == nil {
		return "regular"
	}
	return fmt.Sprintf("%s %d %d", c.Type, *c.Hooknum, *c.Priority)
}

func (f *fakeConn) AddChain(c *nftables.Chain) *nftables.Chain {
	def := *c
	f.queue(func(st *fakeState) error {
		if !st.table {
			return errno(unix.ENOENT, "no table")
		}
		if old, ok := st.defs[c.Name]; ok {
			if hookOf(old) != hookOf(def) {
				return errno(unix.EOPNOTSUPP, "chain %s: hook %s cannot become %s", c.Name, hookOf(old), hookOf(def))
			}
			return nil
		}
		st.chains[c.Name] = []*nftables.Rule{}
		st.defs[c.Name] = def
		return nil
	})
	return c
}

func (f *fakeConn) DelChain(c *nftables.Chain) {
	f.queue(func(st *fakeState) error {
		rules, ok := st.chains[c.Name]
		if !ok {
			return errno(unix.ENOENT, "no chain %s", c.Name)
		}
		if len(rules) > 0 {
			return errno(unix.EBUSY, "chain %s has rules", c.Name)
		}
		delete(st.chains, c.Name)
		delete(st.defs, c.Name)
		return nil
	})
}

func (f *fakeConn) ListChain(_ *nftables.Table, name string) (*nftables.Chain, error) {
	def, ok := f.st.defs[name]
	if !ok {
		return nil, errno(unix.ENOENT, "no chain %s", name)
	}
	return &def, nil
}

func (f *fakeConn) FlushChain(c *nftables.Chain) {
	f.queue(func(st *fakeState) error {
		if _, ok := st.chains[c.Name]; !ok {
			return errno(unix.ENOENT, "no chain %s", c.Name)
		}
		st.chains[c.Name] = []*nftables.Rule{}
		return nil
	})
}

func sameSet(a, b nftables.Set) bool {
	return a.KeyType.Name == b.KeyType.Name && a.Interval == b.Interval &&
		a.HasTimeout == b.HasTimeout && a.Dynamic == b.Dynamic
}

func (f *fakeConn) AddSet(s *nftables.Set, vals []nftables.SetElement) error {
	if len(vals) > 0 {
		return fmt.Errorf("fake: AddSet with elements is not used by the blocker")
	}
	def := *s
	f.queue(func(st *fakeState) error {
		if !st.table {
			return errno(unix.ENOENT, "no table")
		}
		if old, ok := st.sets[s.Name]; ok {
			if !sameSet(old.def, def) {
				return errno(unix.EEXIST, "set %s exists with other flags", s.Name)
			}
			return nil
		}
		st.sets[s.Name] = &fakeSet{def: def, elems: map[string]fakeElem{}}
		return nil
	})
	return nil
}

func (f *fakeConn) FlushSet(s *nftables.Set) {
	f.queue(func(st *fakeState) error {
		fs, err := f.set(st, s.Name)
		if err == nil {
			fs.elems = map[string]fakeElem{}
		}
		return err
	})
}

func (f *fakeConn) DelSet(s *nftables.Set) {
	f.queue(func(st *fakeState) error {
		if _, err := f.set(st, s.Name); err != nil {
			return err
		}
		for _, rules := range st.chains {
			for _, r := range rules {
				if slices.Contains(setsOf(r), s.Name) {
					return errno(unix.EBUSY, "set %s is used by a rule", s.Name)
				}
			}
		}
		delete(st.sets, s.Name)
		return nil
	})
}

// setsOf lists the sets a rule refers to.
func setsOf(r *nftables.Rule) []string {
	var out []string
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Lookup:
			out = append(out, e.SetName)
		case *expr.Dynset:
			out = append(out, e.SetName)
		}
	}
	return out
}

func (f *fakeConn) SetAddElements(s *nftables.Set, vals []nftables.SetElement) error {
	vals = slices.Clone(vals)
	f.queue(func(st *fakeState) error {
		fs, err := f.set(st, s.Name)
		if err != nil {
			return err
		}
		for _, v := range vals {
			if len(v.Key) != int(fs.def.KeyType.Bytes) {
				return errno(unix.EINVAL, "key %x is not %d bytes", v.Key, fs.def.KeyType.Bytes)
			}
			if v.Timeout != 0 && !fs.def.HasTimeout {
				return errno(unix.EINVAL, "timeout in a set without timeouts")
			}
			e := fakeElem{key: bytes.Clone(v.Key), end: v.IntervalEnd, timeout: v.Timeout}
			if v.Timeout > 0 {
				e.expires = f.now().Add(v.Timeout)
			}
			id := elemID(v.Key, v.IntervalEnd)
			if old, ok := fs.elems[id]; ok && f.live(old) {
				if f.updates && fs.def.HasTimeout {
					fs.elems[id] = e
				}
				continue
			}
			if fs.def.Size > 0 && len(fs.elems) >= int(fs.def.Size) {
				return errno(unix.ENFILE, "set %s full", s.Name)
			}
			fs.elems[id] = e
		}
		if fs.def.Interval {
			return checkIntervals(fs)
		}
		return nil
	})
	return nil
}

// checkIntervals refuses what the kernel refuses: in key order, an
// interval set alternates range starts and ends (two starts in a row are
// overlapping ranges), and a start and an end never share a key (nft
// merges adjacent ranges; the blocker does too).
func checkIntervals(fs *fakeSet) error {
	elems := slices.Collect(maps.Values(fs.elems))
	slices.SortFunc(elems, func(a, b fakeElem) int { return bytes.Compare(a.key, b.key) })
	for i := 1; i < len(elems); i++ {
		p, e := elems[i-1], elems[i]
		if bytes.Equal(p.key, e.key) || p.end == e.end {
			return errno(unix.EEXIST, "set %s: overlapping or unmerged intervals at %x", fs.def.Name, e.key)
		}
	}
	return nil
}

func (f *fakeConn) SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error {
	vals = slices.Clone(vals)
	f.queue(func(st *fakeState) error {
		fs, err := f.set(st, s.Name)
		if err != nil {
			return err
		}
		for _, v := range vals {
			id := elemID(v.Key, v.IntervalEnd)
			if old, ok := fs.elems[id]; !ok || !f.live(old) {
				return errno(unix.ENOENT, "no element %x in %s", v.Key, s.Name)
			}
			delete(fs.elems, id)
		}
		return nil
	})
	return nil
}

func (f *fakeConn) AddRule(r *nftables.Rule) *nftables.Rule {
	f.queue(func(st *fakeState) error {
		if _, ok := st.chains[r.Chain.Name]; !ok {
			return errno(unix.ENOENT, "no chain %s", r.Chain.Name)
		}
		for _, s := range setsOf(r) {
			if _, ok := st.sets[s]; !ok {
				return errno(unix.ENOENT, "rule refers to missing set %s", s)
			}
		}
		for _, e := range r.Exprs {
			if v, ok := e.(*expr.Verdict); ok && v.Chain != "" {
				if _, ok := st.chains[v.Chain]; !ok {
					return errno(unix.ENOENT, "jump to missing chain %s", v.Chain)
				}
			}
		}
		st.chains[r.Chain.Name] = append(st.chains[r.Chain.Name], r)
		return nil
	})
	return r
}

func (f *fakeConn) Flush() error {
	ops := f.pending
	f.pending = nil
	if len(ops) == 0 {
		return nil
	}
	f.flushes++
	if err := f.failNext; err != nil {
		f.failNext = nil
		return err
	}
	st := f.st.clone()
	for _, op := range ops {
		if err := op(&st); err != nil {
			return err
		}
	}
	f.st = st
	return nil
}

func (f *fakeConn) GetSetElements(s *nftables.Set) ([]nftables.SetElement, error) {
	fs, err := f.set(&f.st, s.Name)
	if err != nil {
		return nil, err
	}
	var out []nftables.SetElement
	for _, e := range fs.elems {
		if !f.live(e) {
			continue
		}
		el := nftables.SetElement{Key: e.key, IntervalEnd: e.end, Timeout: e.timeout}
		if !e.expires.IsZero() {
			el.Expires = e.expires.Sub(f.now()).Truncate(time.Millisecond)
		}
		out = append(out, el)
	}
	return out, nil
}

func (f *fakeConn) GetRules(_ *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error) {
	rules, ok := f.st.chains[c.Name]
	if !ok {
		return nil, errno(unix.ENOENT, "no chain %s", c.Name)
	}
	return rules, nil
}

func (f *fakeConn) CloseLasting() error { return nil }

// reset drops what was queued and not flushed; it is the fake's redial.
func (f *fakeConn) reset() (conn, error) {
	f.pending = nil
	return f, nil
}

// elems returns the live keys of a set, as strings of the set's type.
func (f *fakeConn) elems(name string) map[string]time.Duration {
	out := map[string]time.Duration{}
	els, _ := f.GetSetElements(&nftables.Set{Name: name})
	for _, e := range els {
		k := fmt.Sprintf("%x", e.Key)
		if e.IntervalEnd {
			k += "/end"
		}
		out[k] = e.Expires
	}
	return out
}
