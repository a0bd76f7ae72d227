// Package tcprelay is a TCP relay for tests: it stands in front of a real
// server to count the connections a client opens, or to make the server
// appear only later (listen on a port nothing served until then), or to cut
// the connections under a client (Cut).
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
	open  sync.Map // net.Conn -> true, both sides of each relayed connection
}

// Cut closes every connection relayed so far, both sides, as a network
// failure would; the relay keeps accepting new ones.
func (r *Relay) Cut() {
	r.open.Range(func(c, _ any) bool {
		_ = c.(net.Conn).Close()
		r.open.Delete(c)
		return true
	})
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
	t.Cleanup(func() {
		_ = l.Close()
		r.Cut()
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
			r.open.Store(c, true)
			r.open.Store(up, true)
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				// Either side ending ends both.
				_ = dst.Close()
				_ = src.Close()
				r.open.Delete(dst)
				r.open.Delete(src)
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return r
}
