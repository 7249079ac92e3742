package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/test/internal/labproc"
)

// The restart's timeline: the clients use the service for servedBefore,
// it is down for downtime, then they go on for servedAfter.
const (
	servedBefore = time.Second
	downtime     = 2 * time.Second
	servedAfter  = 3 * time.Second
)

// restart runs the service-restart scenario.
func (sr *scenarioRun) restart() error {
	l := sr.e.l
	if err := sr.startDaemon(nil); err != nil {
		return err
	}
	svcArgv := []string{sr.e.self, helperService, "-port", fmt.Sprint(restartPort)}
	svc, err := sr.start("service on 8080", l.T, svcArgv...)
	if err != nil {
		return err
	}
	clients := []struct {
		name string
		h    host
	}{{"C", l.C}, {"N1", l.N1}, {"N2", l.N2}}
	procs := make([]*labproc.Proc, len(clients))
	for i, c := range clients {
		if procs[i], err = sr.start("client "+c.name, c.h, sr.e.self, helperConnect, "-port", fmt.Sprint(restartPort), l.T.v4.String(), l.T.v6.String()); err != nil {
			return err
		}
	}
	if err := sr.sleep(servedBefore); err != nil {
		return err
	}
	stoppedAt := time.Now()
	if err := svc.Stop(0, 5*time.Second); err != nil {
		return fmt.Errorf("stopping the service: %w", err)
	}
	if err := sr.sleep(downtime - time.Since(stoppedAt)); err != nil {
		return err
	}
	if _, err := sr.start("service on 8080, restarted", l.T, svcArgv...); err != nil {
		return err
	}
	restartedAt := time.Now()
	if err := sr.sleep(servedAfter); err != nil {
		return err
	}

	var bannedClients, servedAgain []string
	var worstBack time.Duration
	var down restartStats
	for i, c := range clients {
		var as []attempt
		if err := finish(procs[i], &as); err != nil {
			return err
		}
		st := analyzeRestart(as, stoppedAt, restartedAt)
		down.add(st)
		in, err := sr.banned(c.h.v4, c.h.v6)
		if err != nil {
			return err
		}
		if len(in) > 0 || len(sr.blockLines(c.h.v4))+len(sr.blockLines(c.h.v6)) > 0 {
			bannedClients = append(bannedClients, c.name)
		}
		if st.servedAfter > 0 {
			servedAgain = append(servedAgain, c.name)
			worstBack = max(worstBack, st.back)
		}
		if st.failedAfter > 0 {
			sr.note("client %s: %d attempts started after the restart failed: %s", c.name, st.failedAfter, strings.Join(st.errorsAfter, "; "))
		}
		if st.servedBefore == 0 {
			sr.note("client %s was not served before the stop", c.name)
		}
	}
	sr.add("clients (C one hop away, N1 and N2 on T's link, IPv4 and IPv6) banned", "0",
		fmt.Sprintf("%d of %d%s", len(bannedClients), len(clients), listed(bannedClients)), len(bannedClients) == 0)
	sr.add("clients served again after the restart", "all",
		fmt.Sprintf("%d of %d, the last %.0f ms after the service was back", len(servedAgain), len(clients), float64(worstBack)/float64(time.Millisecond)),
		len(servedAgain) == len(clients))
	sr.info("attempts while the service was down", down.downText())
	return nil
}

func listed(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return " (" + strings.Join(names, ", ") + ")"
}

// restartStats is what one client's attempts went through.
type restartStats struct {
	servedBefore int           // attempts served that started before the stop
	down         int           // attempts started while the service was down
	refused      int           // of which refused at once (the kernel's RST)
	timedOut     int           // of which got no answer (dropped: trapped)
	otherDown    int           // of which failed otherwise
	servedAfter  int           // attempts served that started after the restart
	failedAfter  int           // attempts that failed and started after the restart
	back         time.Duration // from the restart to the first attempt served
	errorsAfter  []string      // the first few errors after the restart
}

// analyzeRestart sorts a client's attempts by the restart's timeline.
func analyzeRestart(as []attempt, stoppedAt, restartedAt time.Time) restartStats {
	var st restartStats
	for _, a := range as {
		switch {
		case a.At.Before(stoppedAt):
			if a.OK {
				st.servedBefore++
			}
		case a.At.Before(restartedAt):
			if a.OK { // served just before the listener closed
				continue
			}
			st.down++
			switch {
			case strings.Contains(a.Error, "connection refused"):
				st.refused++
			case strings.Contains(a.Error, "timeout"):
				st.timedOut++
			default:
				st.otherDown++
			}
		case a.OK:
			if st.servedAfter == 0 {
				st.back = a.At.Add(time.Duration(a.Took * float64(time.Second))).Sub(restartedAt)
			}
			st.servedAfter++
		default:
			st.failedAfter++
			if len(st.errorsAfter) < 3 {
				st.errorsAfter = append(st.errorsAfter, a.Addr+": "+a.Error)
			}
		}
	}
	return st
}

// add sums another client's figures into st (those downText tells).
func (st *restartStats) add(o restartStats) {
	st.down += o.down
	st.refused += o.refused
	st.timedOut += o.timedOut
	st.otherDown += o.otherDown
}

// downText tells how the attempts made while the service was down ended.
func (st restartStats) downText() string {
	return fmt.Sprintf("%d failed: %d refused at once (an RST), %d got no answer within 1 s (SYN dropped), %d otherwise",
		st.down, st.refused, st.timedOut, st.otherDown)
}
