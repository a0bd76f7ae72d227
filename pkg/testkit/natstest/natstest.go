// Package natstest starts a real NATS server with JetStream for a test: the
// project's own nats-server version, in-process, with its data in a temporary
// directory. The server can be stopped and restarted on the same port with the
// same data, to test what happens while NATS is down.
package natstest

import (
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/testkit/natsembed"
)

// Server is a test's NATS server.
type Server struct {
	t   testing.TB
	cfg natsembed.Config

	mu  sync.Mutex
	srv *server.Server
}

// Start starts a JetStream server for t; it is shut down in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	cfg := natsembed.Config{Host: "127.0.0.1", Port: freePort(t), StoreDir: t.TempDir()}
	s := &Server{t: t, cfg: cfg}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// URL is the client URL; it stays the same across restarts.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

// JetStream connects a client to the server, closed when t ends.
func (s *Server) JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Stop shuts the server down (safe to call twice).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart stops the server if running and starts it again with the same port and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, err := natsembed.Start(s.cfg)
	if err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
	s.srv = srv
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
