package labnmap

import (
	"fmt"
	"testing"
)

func TestParse(t *testing.T) {
	out := `Starting Nmap
<?xml version="1.0" encoding="UTF-8"?>
<nmaprun><host><ports>
<extraports state="filtered" count="1021"></extraports>
<port protocol="tcp" portid="80"><state state="open"/></port>
<port protocol="tcp" portid="113"><state state="closed"/></port>
<port protocol="tcp" portid="139"><state state="closed"/></port>
</ports></host></nmaprun>`
	r, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Answered() != 3 || r.States() != "open 1, closed 2, filtered 1021" || r.TimedOut {
		t.Errorf("Parse = %+v: answered %d, states %q", r, r.Answered(), r.States())
	}
	if got := fmt.Sprint(r.AnsweredPorts()); got != "[80/tcp open 113/tcp closed 139/tcp closed]" {
		t.Errorf("AnsweredPorts = %s", got)
	}
	r, err = Parse(`<?xml version="1.0"?><nmaprun><host timedout="true"><ports>
<extraports state="closed" count="7"></extraports>
<port protocol="udp" portid="53"><state state="open|filtered"/></port>
</ports></host></nmaprun>`)
	if err != nil || r.Answered() != 7 || len(r.AnsweredPorts()) != 0 || !r.TimedOut {
		t.Errorf("Parse = %+v, %v: answered %d", r, err, r.Answered())
	}
	for _, bad := range []string{"Starting Nmap", "<?xml version=\"1.0\"?><nmaprun><host>"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) found a report", bad)
		}
	}
}
