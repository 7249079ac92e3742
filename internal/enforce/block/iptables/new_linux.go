package iptables

// New checks that iptables works on this host, creates the chain and the
// jump from INPUT when missing (in both families), and returns the
// blocker. When the IPv4 program is missing or does not work (no such
// binary, no kernel support, not root) the error wraps
// block.ErrUnavailable. Opening twice adds nothing twice.
func New(opts Options) (*Blocker, error) {
	return open(opts, execRunner{timeout: opts.Timeout})
}
