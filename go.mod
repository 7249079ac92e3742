module github.com/portsentry-go/portsentry

go 1.26.8

require (
	github.com/google/go-cmp v0.7.0
	github.com/gopacket/gopacket v1.7.7
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
)
