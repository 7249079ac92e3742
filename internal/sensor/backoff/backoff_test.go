package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	var got []time.Duration
	for d := time.Duration(0); len(got) < 10; {
		d = Next(d)
		got = append(got, d)
	}
	if got[0] != First || got[1] != 2*First || got[len(got)-1] != Max {
		t.Errorf("delays %v: want %v, doubling, capped at %v", got, First, Max)
	}
}

func TestSleepCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep on a cancelled context reported it live")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep on a live context reported it done")
	}
}
