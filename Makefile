# portsentry — build, run and test. See README.md.
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED := 0

# Debian's real portsentry.conf, fetched by scripts/test-deps, loaded
# unchanged by internal/config's tests (which skip when it is absent).
DEBIAN_CONF := $(CURDIR)/.cache/debian-portsentry/etc/portsentry/portsentry.conf

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/portsentry

.PHONY: build run test deps

# A static binary: no cgo, no libc dependency.
build:
	go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/portsentry

# Run in the foreground on the shipped configuration (as root: trap ports
# below 1024 and the files under /var/lib/portsentry need it).
run: build
	./$(BIN) -c packaging/portsentry.conf

# Packages the race detector runs over: all but the end-to-end suites under
# test/, which drive the real (cgo-free) binary and gain nothing from it.
RACE_PKGS = $$(go list ./... | grep -v '^github.com/portsentry-go/portsentry/test/')

# Every test: static checks, unit and fuzz-seed tests, then the end-to-end
# suite in network namespaces (root; real nmap, nftables, fail2ban); then
# the unit tests again under the race detector, which needs cgo (gcc,
# libc6-dev): only those test binaries are built with it, never bin/; then
# every fuzz target for TEST_FUZZTIME (see fuzz below).
test: deps
	go vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	go build ./...
	PORTSENTRY_DEBIAN_CONF=$$(test -f $(DEBIAN_CONF) && echo $(DEBIAN_CONF)) go test -count=1 ./...
	PORTSENTRY_DEBIAN_CONF=$$(test -f $(DEBIAN_CONF) && echo $(DEBIAN_CONF)) CGO_ENABLED=1 go test -race -count=1 $(RACE_PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

# Fuzzing: every fuzz target of the repository, FUZZTIME each (`make fuzz
# FUZZTIME=10m` for a long run). The targets are found, not listed: every
# `func FuzzX(... *testing.F)` in a test file the go tool builds on this
# system, so a new one is fuzzed as soon as it exists. One `go test -fuzz`
# per target (it fuzzes one at a time); all are run, the failed ones listed
# at the end. The fuzzer keeps new inputs in the build cache, and writes a
# failing one to testdata/fuzz/FuzzX/ of its package: commit it with the fix
# as a seed. `make test` runs this with TEST_FUZZTIME per target. A target
# that Go 1.26 stops with a bare deadline error is not a failure: see
# scripts/fuzz.
FUZZTIME      ?= 10s
TEST_FUZZTIME ?= 5s
FUZZ_TARGETS = files=$$(go list -f '{{range .TestGoFiles}}{{$$.ImportPath}} {{$$.Dir}}/{{.}}{{"\n"}}{{end}}{{range .XTestGoFiles}}{{$$.ImportPath}} {{$$.Dir}}/{{.}}{{"\n"}}{{end}}' ./...) && \
	echo "$$files" | while read -r pkg file; do \
		test -z "$$file" || sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' "$$file" | sed "s|^|$$pkg |"; \
	done

.PHONY: fuzz fuzz-list
fuzz:
	@targets=$$($(FUZZ_TARGETS)) || exit 1; echo "$$targets" | scripts/fuzz $(FUZZTIME)

# The fuzz targets `make fuzz` runs, one "package target" a line.
fuzz-list:
	@$(FUZZ_TARGETS)

# Installs the Debian packages the tests use (once; quick when present).
deps:
	@scripts/test-deps

# The scan-lab benchmark (root; nmap, masscan, tcpdump, nftables): real
# scanners against the daemon in network namespaces; prints a Markdown table
# of what each scanner learned before the block. Flags: SCANLAB_FLAGS='-mode
# tcp,udp -scans syn,fin -out FILE'.
.PHONY: scanlab
scanlab: build
	go run ./test/scanlab $(SCANLAB_FLAGS)

# The flood benchmark (root; hping3, nmap, nftables): floods of forged
# probes (TCP SYN, UDP, IPv6 SYN from random sources) at the daemon on the
# shipped configuration in network namespaces, with an innocent client and
# real scans during and after each; prints a Markdown table of what each
# flood cost (CPU, memory, writes, ban sets, status latency). Flags:
# FLOODLAB_FLAGS='-duration 10s -scenarios syn,udp,syn6 -out FILE'.
.PHONY: floodlab
floodlab:
	go run ./test/floodlab $(FLOODLAB_FLAGS)

# The trust benchmark (root; nmap, nftables, traceroute, mtr): forged
# probes claiming a client one router hop away, a service restart under
# its clients, traceroute and mtr, and a slow nmap -T1 scan, against the
# daemon on the shipped configuration in network namespaces; prints a
# Markdown table of each measurement against issue 9's targets. Flags:
# TRUSTLAB_FLAGS='-scenarios forged,restart -out FILE'.
.PHONY: trustlab
trustlab:
	go run ./test/trustlab $(TRUSTLAB_FLAGS)

# The fleet benchmark (root; nftables): three real daemons in network
# namespaces share bans through their embedded NATS servers, then through
# an external three-node nats-server cluster; prints p50/p99 of the time
# from A's ban to the address in B's and C's kernel sets. Flags:
# FLEETLAB_FLAGS='-bans 1000 -modes embedded,external -out FILE'; the scale
# run: FLEETLAB_FLAGS='-modes scale -members 200 -rate 1000 -duration 60s'.
.PHONY: fleetlab
fleetlab:
	go run ./test/fleetlab $(FLEETLAB_FLAGS)

# The Debian package: dist/portsentry_<version>_<arch>.deb, built with
# dpkg-deb (static binary, systemd unit, conffiles, man pages); it upgrades
# Debian's portsentry 1.2 in place. Checked by `go test ./test/pkg/` (root).
.PHONY: deb
deb:
	scripts/build-deb
