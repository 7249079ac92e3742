package labproc

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/syncbuf"
)

func TestStartWaitOutputStop(t *testing.T) {
	p, err := Start("sh", true, "/bin/sh", "-c", "echo ready; cat >/dev/null; echo bye")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput(context.Background(), "ready", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(0, 5*time.Second); err != nil { // closing stdin ends cat
		t.Fatal(err)
	}
	if got := p.Output(); got != "ready\nbye\n" {
		t.Errorf("Output() = %q", got)
	}
}

func TestStartLoggedKeepsHead(t *testing.T) {
	var log syncbuf.Buffer
	p, err := StartLogged("sh", &log, 4, "/bin/sh", "-c", "echo 0123456789")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Output() != "0123" || log.String() != "0123456789\n" {
		t.Errorf("kept %q, logged %q", p.Output(), log.String())
	}
}

func TestRunAndSignalExit(t *testing.T) {
	if _, err := Run(context.Background(), 5*time.Second, "/bin/sh", "-c", "echo oops; exit 3"); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("Run of a failing command: %v", err)
	}
	p, err := Start("sleep", false, "sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(syscall.SIGTERM, 5*time.Second); !IsSignalExit(err) {
		t.Errorf("Stop(SIGTERM) = %v, want a signal exit", err)
	}
	if got := Tail("a\n\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("Tail = %q", got)
	}
}
