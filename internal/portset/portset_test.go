package portset

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint16
		wantStr string
	}{
		{in: "", want: []uint16{}, wantStr: ""},
		{in: "  \t", want: []uint16{}, wantStr: ""},
		{in: "1", want: []uint16{1}, wantStr: "1"},
		{in: "65535", want: []uint16{65535}, wantStr: "65535"},
		{in: "1,7,9,512-515", want: []uint16{1, 7, 9, 512, 513, 514, 515}, wantStr: "1,7,9,512-515"},
		{in: " 9 , 7,\t1 ", want: []uint16{1, 7, 9}, wantStr: "1,7,9"},
		{in: "512 - 515", want: []uint16{512, 513, 514, 515}, wantStr: "512-515"},
		{in: "5-5", want: []uint16{5}, wantStr: "5"},
		{in: "7,7,7", want: []uint16{7}, wantStr: "7"},
		{in: "3,1,2", want: []uint16{1, 2, 3}, wantStr: "1-3"},
		{in: "543-544", want: []uint16{543, 544}, wantStr: "543-544"},
		{in: "080", want: []uint16{80}, wantStr: "80"},
		{in: "65534-65535", want: []uint16{65534, 65535}, wantStr: "65534-65535"},
		{in: "60-70,65-80", want: seq(60, 80), wantStr: "60-80"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, s.Ports()); diff != "" {
				t.Errorf("Parse(%q).Ports() mismatch (-want +got):\n%s", tt.in, diff)
			}
			if got := s.String(); got != tt.wantStr {
				t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.wantStr)
			}
			if got := s.Len(); got != len(tt.want) {
				t.Errorf("Len() = %d, want %d", got, len(tt.want))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in       string
		wantItem string
		wantMsg  string
	}{
		{"70000", "70000", `bad port "70000" (must be 1-65535)`},
		{"0", "0", `bad port "0" (must be 1-65535)`},
		{"65536", "65536", `bad port "65536" (must be 1-65535)`},
		{"99999999999999999999999", "99999999999999999999999", `bad port "99999999999999999999999" (must be 1-65535)`},
		{"515-512", "515-512", `bad range "515-512" (start is after end)`},
		{"1-70000", "1-70000", `bad range "1-70000": bad port "70000" (must be 1-65535)`},
		{"1-2-3", "1-2-3", `bad range "1-2-3": bad port "2-3" (must be 1-65535)`},
		{"-5", "-5", `bad range "-5": bad port "" (must be 1-65535)`},
		{"5-", "5-", `bad range "5-": bad port "" (must be 1-65535)`},
		{"1,,2", "", `empty item`},
		{"1,2,", "", `empty item`},
		{",", "", `empty item`},
		{"+7", "+7", `bad port "+7" (must be 1-65535)`},
		{"1 2", "1 2", `bad port "1 2" (must be 1-65535)`},
		{"ssh", "ssh", `bad port "ssh" (must be 1-65535)`},
		{"1;2", "1;2", `bad port "1;2" (must be 1-65535)`},
		{"1,7,9,x", "x", `bad port "x" (must be 1-65535)`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := Parse(tt.in)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) = %v, %v; want *ParseError", tt.in, s, err)
			}
			got := struct{ Item, Msg string }{pe.Item, err.Error()}
			want := struct{ Item, Msg string }{tt.wantItem, tt.wantMsg}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse(%q) error mismatch (-want +got):\n%s", tt.in, diff)
			}
			if s != (Set{}) {
				t.Errorf("Parse(%q) returned a non-empty set with its error", tt.in)
			}
		})
	}
}

func seq(lo, hi int) []uint16 {
	out := []uint16{}
	for p := lo; p <= hi; p++ {
		out = append(out, uint16(p))
	}
	return out
}

func TestBelow(t *testing.T) {
	tests := []struct {
		n       int
		wantLen int
		wantStr string
	}{
		{-1, 0, ""},
		{0, 0, ""},
		{1, 0, ""},
		{2, 1, "1"},
		{64, 63, "1-63"},
		{65, 64, "1-64"},
		{1024, 1023, "1-1023"},
		{65535, 65534, "1-65534"},
		{65536, 65535, "1-65535"},
		{1 << 30, 65535, "1-65535"},
	}
	for _, tt := range tests {
		s := Below(tt.n)
		if got := s.Len(); got != tt.wantLen {
			t.Errorf("Below(%d).Len() = %d, want %d", tt.n, got, tt.wantLen)
		}
		if got := s.String(); got != tt.wantStr {
			t.Errorf("Below(%d).String() = %q, want %q", tt.n, got, tt.wantStr)
		}
		if s.Has(0) {
			t.Errorf("Below(%d) has port 0", tt.n)
		}
	}
}

func TestAddRemove(t *testing.T) {
	var s Set
	s.Add(0) // must be ignored
	if s.Has(0) || s.Len() != 0 {
		t.Fatalf("Add(0) changed the set: %v", s.Ports())
	}
	for _, p := range []uint16{1, 63, 64, 65535} {
		s.Add(p)
		if !s.Has(p) {
			t.Errorf("Has(%d) = false after Add", p)
		}
	}
	s.Remove(63)
	s.Remove(1000) // absent: no-op
	if diff := cmp.Diff([]uint16{1, 64, 65535}, s.Ports()); diff != "" {
		t.Errorf("after Remove (-want +got):\n%s", diff)
	}
}

func TestAddSetRemoveSet(t *testing.T) {
	// The advanced-mode computation: every port below 1024, minus excludes.
	s := Below(1024)
	ex, err := Parse("113,139")
	if err != nil {
		t.Fatal(err)
	}
	s.RemoveSet(&ex)
	if got, want := s.String(), "1-112,114-138,140-1023"; got != want {
		t.Errorf("RemoveSet: got %q, want %q", got, want)
	}
	s.AddSet(&ex)
	if want := Below(1024); s != want {
		t.Errorf("AddSet did not restore the set: %v", s)
	}
}

func TestHasDoesNotAllocate(t *testing.T) {
	s, _ := Parse("1,7,9,512-515")
	allocs := testing.AllocsPerRun(100, func() {
		_ = s.Has(513)
	})
	if allocs != 0 {
		t.Errorf("Has allocates %v times, want 0", allocs)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "1", "1,7,9,512-515", " 1 , 2-3 ", "515-512", "70000", "1,,2",
		"0", "-", "1-65535", "65535", "1-2-3", "080", "+1", "\t9\t",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %T is not *ParseError", in, err)
			}
			return
		}
		if s.Has(0) {
			t.Fatalf("Parse(%q) contains port 0", in)
		}
		str := s.String()
		back, err := Parse(str)
		if err != nil {
			t.Fatalf("Parse(String()=%q) of Parse(%q): %v", str, in, err)
		}
		if back != s {
			t.Fatalf("round trip of %q via %q changed the set", in, str)
		}
		if back.String() != str {
			t.Fatalf("String not canonical: %q then %q", str, back.String())
		}
		if len(s.Ports()) != s.Len() {
			t.Fatalf("Len %d != len(Ports) %d", s.Len(), len(s.Ports()))
		}
	})
}
