package labsvc

import (
	"testing"
	"time"
)

func TestParseInnocent(t *testing.T) {
	r, err := ParseInnocent("warm-up: x\n" + resultMark + `{"requests":8,"failures":1,"errors":["+1.000s tcp boom"]}` + "\n")
	if err != nil || r.Requests != 8 || r.Failures != 1 || len(r.Errors) != 1 {
		t.Errorf("ParseInnocent = %+v, %v", r, err)
	}
	if _, err := ParseInnocent("nothing"); err == nil {
		t.Error("ParseInnocent found a result in nothing")
	}
}

// TestWaitStopWins: with a tick waiting too, a closed stop is seen every
// time (a random choice would miss it half the time).
func TestWaitStopWins(t *testing.T) {
	stop := make(chan struct{})
	tick := make(chan time.Time, 1)
	tick <- time.Now()
	if Wait(stop, tick) {
		t.Fatal("Wait saw a stop before it was closed")
	}
	close(stop)
	for i := 0; i < 200; i++ {
		tick <- time.Now()
		if !Wait(stop, tick) {
			t.Fatalf("round %d: Wait took the tick over the closed stop", i)
		}
		<-tick
	}
}
