package main

// What floodlab reads of the daemon and of the kernel: /proc/PID/{stat,
// status,io}, the sizes of the daemon's files, the kernel's ban sets.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"

	"github.com/portsentry-go/portsentry/test/internal/labdaemon"
	"github.com/portsentry-go/portsentry/test/internal/labproc"
	"github.com/portsentry-go/portsentry/test/internal/nftset"
)

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture's user ABI.
const userHZ = 100

// procSample is one reading of a process's counters.
type procSample struct {
	at         time.Time
	cpu        time.Duration // utime + stime, all threads
	writeBytes uint64        // bytes sent to the storage layer (page cache dirtied)
	wchar      uint64        // bytes passed to write(2) and the like: files, pipes, sockets
	hwm, rss   uint64        // VmHWM, VmRSS, bytes
	threads    int
}

// sampleProc reads pid's counters.
func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	dir := fmt.Sprintf("/proc/%d/", pid)
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return s, err
	}
	if s.cpu, err = parseStatCPU(string(stat)); err != nil {
		return s, err
	}
	io, err := readKeyed(dir + "io")
	if err != nil {
		return s, err
	}
	s.writeBytes, s.wchar = io["write_bytes"], io["wchar"]
	st, err := readKeyed(dir + "status")
	if err != nil {
		return s, err
	}
	s.hwm, s.rss, s.threads = st["VmHWM"]*1024, st["VmRSS"]*1024, int(st["Threads"])
	return s, nil
}

// parseStatCPU returns utime+stime of a /proc/PID/stat line. The command
// name, in parentheses, may hold spaces: fields are counted after its
// closing parenthesis (field 3, the state, is the first there).
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no command name in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // fields 14 utime and 15 stime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// readKeyed reads a "Key: value [kB]" file, /proc/PID/status or io, keeping
// the first number of each line.
func readKeyed(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKeyed(string(b)), nil
}

func parseKeyed(text string) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			out[strings.TrimSpace(k)] = n
		}
	}
	return out
}

// fileSize is one file the daemon wrote.
type fileSize struct {
	name string
	size int64
}

// dirFiles lists the regular files under dir with their sizes, largest
// first, and their total.
func dirFiles(dir string) ([]fileSize, int64, error) {
	var files []fileSize
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files = append(files, fileSize{rel, info.Size()})
		total += info.Size()
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].size > files[j].size })
	return files, total, err
}

// banSet is what floodlab reads of one of the daemon's ban sets.
type banSet struct {
	elems int // -1: unread
	size  int // the set's capacity (0: none given)
}

// full reports whether the set has reached its capacity: the trap can
// then ban nobody new.
func (b banSet) full() bool { return b.size > 0 && b.elems >= b.size }

// readBanSets reads the daemon's ban4 and ban6 sets in T, once the daemon
// has stopped. Listing a set takes the kernel time that grows with the
// square of its elements (each netlink message of the dump walks the set
// from its start): about ten minutes for a million. A full set is told
// by the kernel refusing one more element, at once, and is not listed.
func readBanSets(ctx context.Context, l *lab, nft string) (ban4, ban6 banSet, err error) {
	sets := [2]banSet{{elems: -1}, {elems: -1}}
	sizes, err := banSetSizes(l)
	if err != nil {
		return sets[0], sets[1], err
	}
	for i, name := range []string{"ban4", "ban6"} {
		sets[i].size = sizes[name]
		full, err := banSetFull(ctx, l, nft, name)
		if err != nil {
			return sets[0], sets[1], err
		}
		if full {
			sets[i].elems = sets[i].size
			continue
		}
		out, err := labproc.Run(ctx, 15*time.Minute, l.T.ns.Argv(nft, "-j", "list", "set", "inet", labdaemon.Table, name)...)
		if err != nil {
			return sets[0], sets[1], fmt.Errorf("reading the ban set %s: %w", name, err)
		}
		if sets[i], err = parseBanSet([]byte(out)); err != nil {
			return sets[0], sets[1], fmt.Errorf("nft -j list set inet %s %s: %w", labdaemon.Table, name, err)
		}
	}
	return sets[0], sets[1], nil
}

// banSetSizes reads the sizes of the daemon's sets in T from their
// definitions, without their elements.
func banSetSizes(l *lab) (map[string]int, error) {
	c, err := nftables.New(nftables.WithNetNSFd(l.T.ns.Fd()))
	if err != nil {
		return nil, fmt.Errorf("nftables in T: %w", err)
	}
	defer c.CloseLasting()
	sets, err := c.GetSets(&nftables.Table{Name: labdaemon.Table, Family: nftables.TableFamilyINet})
	if err != nil {
		return nil, fmt.Errorf("the sets of table inet %s in T: %w", labdaemon.Table, err)
	}
	sizes := map[string]int{}
	for _, s := range sets {
		sizes[s.Name] = int(s.Size)
	}
	return sizes, nil
}

// setProbe is the element banSetFull tries to add to each set: the
// unspecified address, never a probe's source (the kernel drops IPv4
// packets from 0.0.0.0 as martians, and no flood here comes from ::).
var setProbe = map[string]string{"ban4": "0.0.0.0", "ban6": "::"}

// banSetFull reports whether the set is full: the kernel refuses to create
// one more element (ENFILE, which nft prints as "Too many open files in
// system"). An element it creates is deleted at once.
func banSetFull(ctx context.Context, l *lab, nft, set string) (bool, error) {
	elem := "{ " + setProbe[set] + " timeout 1m }"
	out, err := labproc.Run(ctx, time.Minute, l.T.ns.Argv(nft, "create", "element", "inet", labdaemon.Table, set, elem)...)
	switch {
	case err == nil:
		_, err := labproc.Run(ctx, time.Minute, l.T.ns.Argv(nft, "delete", "element", "inet", labdaemon.Table, set, "{ "+setProbe[set]+" }")...)
		return false, err
	case strings.Contains(out, "Too many open files"):
		return true, nil
	case strings.Contains(out, "File exists"): // there already: no information
		return false, nil
	}
	return false, fmt.Errorf("probing whether %s is full: %w", set, err)
}

// parseBanSet reads `nft -j list set`: the elements (with package
// nftset) and the set's size.
func parseBanSet(out []byte) (banSet, error) {
	elems, err := nftset.Parse(out)
	if err != nil {
		return banSet{elems: -1}, err
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Size int `json:"size"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return banSet{elems: -1}, err
	}
	b := banSet{elems: len(elems)}
	for _, o := range doc.Nftables {
		if o.Set != nil {
			b.size = o.Set.Size
		}
	}
	return b, nil
}
