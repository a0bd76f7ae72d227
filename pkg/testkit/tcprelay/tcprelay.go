// Package tcprelay is a TCP relay for tests: it stands in front of a real
// server to count the connections a client opens, or to make the server
// appear only later (listen on a port nothing served until then).
package tcprelay

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Relay forwards every connection to its upstream until the test ends.
type Relay struct {
	// Addr is where the relay listens.
	Addr string
	// Port is Addr's port.
	Port  int
	conns atomic.Int64
}

// Conns is how many connections the relay has accepted.
func (r *Relay) Conns() int64 { return r.conns.Load() }

// Start relays listen (e.g. "127.0.0.1:0", or the address of a server that
// is "down" until now) to upstream, closing everything when t ends.
func Start(t testing.TB, listen, upstream string) *Relay {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("tcprelay: listen %s: %v", listen, err)
	}
	r := &Relay{Addr: l.Addr().String(), Port: l.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	var open sync.Map
	t.Cleanup(func() {
		_ = l.Close()
		open.Range(func(c, _ any) bool { _ = c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			open.Store(c, true)
			open.Store(up, true)
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				// Either side ending ends both.
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return r
}
