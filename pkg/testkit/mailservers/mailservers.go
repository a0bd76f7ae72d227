// Package mailservers starts SMTP servers that nobody here wrote, for the
// interoperability tests of the SMTP provider, and reads back what they
// received:
//
//   - Mailpit (Go, github.com/axllent/mailpit; its HTTP API returns the raw
//     message and the envelope),
//   - Postfix (Debian's package) run as a private instance with strict
//     settings (strict_rfc821_envelopes, EHLO required and checked) that
//     delivers every recipient into a Maildir,
//   - aiosmtpd (Python, Debian's python3-aiosmtpd) with a handler that keeps
//     each transaction's envelope and raw bytes.
//
// scripts/mail-servers.sh installs them where they are missing (Mailpit into
// .bin/ by scripts/tools.sh, the others with apt-get); the starters here call it
// once per test binary. A server that cannot be installed or started fails the
// test: the matrix never skips.
//
// Every server is started with one Config and listens in several Modes, each
// on its own port; Port says which modes an implementation has. Messages of
// all modes land in one inbox: tests tell theirs apart by Message-ID.
package mailservers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is one way a server listens.
type Mode string

const (
	// Plain: no TLS required; STARTTLS offered (so opportunistic STARTTLS
	// upgrades); AUTH PLAIN and LOGIN offered (not required) when
	// Config.Username is set, also without TLS.
	Plain Mode = "plain"
	// StartTLSRequired: STARTTLS offered, and MAIL refused until the client
	// has used it.
	StartTLSRequired Mode = "starttls-required"
	// Implicit: TLS from the first byte (the port 465 style).
	Implicit Mode = "implicit"
	// LoginOnly: like Plain, but AUTH offers LOGIN and not PLAIN.
	LoginOnly Mode = "login-only"
)

// Config is what a server is set up with. Every field is required.
type Config struct {
	// CA issued the server's certificate (for 127.0.0.1 and localhost).
	CA *CA
	// Username and Password are the one account AUTH accepts.
	Username, Password string
	// MaxSize is the message size limit, advertised with SIZE where the
	// server advertises it, and enforced.
	MaxSize int64
	// IdleTimeout: the server closes a connection idle for this long.
	IdleTimeout time.Duration
	// RefuseLocalPart: RCPT TO with this local part (any domain) is refused
	// with a 5xx reply; every other recipient is accepted.
	RefuseLocalPart string
}

// Received is one message as a server stored it.
type Received struct {
	// EnvelopeFrom is the reverse-path of MAIL FROM, without angle brackets
	// ("" for the null reverse-path <>).
	EnvelopeFrom string
	// Recipients are the envelope recipients this copy was delivered to
	// (servers that deliver per recipient store one copy each).
	Recipients []string
	// Raw is the message as stored; a server may have prepended trace
	// headers (Received, Return-Path, Delivered-To).
	Raw []byte
}

// Server is a running SMTP server.
type Server struct {
	// Name is the implementation: "mailpit", "postfix" or "aiosmtpd".
	Name string
	// Version is the implementation's version as it reports it.
	Version string
	// Host is the address the ports listen on, "127.0.0.1".
	Host string
	// SMTPUTF8 reports whether the server offers SMTPUTF8 (RFC 6531).
	SMTPUTF8 bool

	ports map[Mode]int
	inbox func(ctx context.Context) ([]Received, error)
}

// Port returns the port of mode m; false when the implementation cannot
// listen that way.
func (s *Server) Port(m Mode) (int, bool) {
	p, ok := s.ports[m]
	return p, ok
}

// Received returns everything the server has stored so far.
func (s *Server) Received(ctx context.Context) ([]Received, error) { return s.inbox(ctx) }

// WaitFor waits until the copies of the message whose raw bytes contain
// marker (its Message-ID, say) together reach every one of rcpts, and returns
// them. It fails t after timeout.
func (s *Server) WaitFor(t testing.TB, marker string, rcpts []string, timeout time.Duration) []Received {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// One read may take long on a loaded machine (Mailpit serving a
		// 10 MB message): it gets all the time left, not a slice of it.
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		all, err := s.inbox(ctx)
		cancel()
		var mine []Received
		got := map[string]bool{}
		if err == nil {
			for _, r := range all {
				if strings.Contains(string(r.Raw), marker) {
					mine = append(mine, r)
					for _, to := range r.Recipients {
						got[strings.ToLower(to)] = true
					}
				}
			}
			missing := 0
			for _, r := range rcpts {
				if !got[strings.ToLower(r)] {
					missing++
				}
			}
			if missing == 0 && len(mine) > 0 {
				return mine
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: message %s did not reach %v within %s (got %d copies for %v; last error %v)",
				s.Name, marker, rcpts, timeout, len(mine), keys(got), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

var (
	installOnce sync.Once
	installErr  error
)

// install runs scripts/mail-servers.sh install once per test binary.
func install() error {
	installOnce.Do(func() {
		script := filepath.Join(repoRoot(), "scripts", "mail-servers.sh")
		cmd := exec.Command("bash", script, "install")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			installErr = fmt.Errorf("%s install: %w (%s)", script, err, out)
		}
	})
	return installErr
}

// repoRoot is the directory above pkg/ (this file is pkg/testkit/mailservers/).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// waitListening waits until every port accepts connections.
func waitListening(ports []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, p := range ports {
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("port %d is not listening after %s: %w", p, timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}
