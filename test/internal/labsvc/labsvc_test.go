package labsvc

import "testing"

func TestParseInnocent(t *testing.T) {
	r, err := ParseInnocent("warm-up: x\n" + resultMark + `{"requests":8,"failures":1,"errors":["+1.000s tcp boom"]}` + "\n")
	if err != nil || r.Requests != 8 || r.Failures != 1 || len(r.Errors) != 1 {
		t.Errorf("ParseInnocent = %+v, %v", r, err)
	}
	if _, err := ParseInnocent("nothing"); err == nil {
		t.Error("ParseInnocent found a result in nothing")
	}
}
