// Package dnstest is an authoritative DNS server for tests: miekg/dns's
// server (an implementation nobody here wrote) on a loopback port, over UDP
// and TCP, answering TXT and MX records the test sets and NXDOMAIN for every
// other name. Point a resolver at Addr (bouncedomain's DNS_SERVER).
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running DNS server.
type Server struct {
	addr string

	mu      sync.Mutex
	txt     map[string][]string
	mx      map[string][]string
	queries int
}

// Start starts a server on 127.0.0.1 (UDP and TCP on one port); it stops
// when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{txt: map[string][]string{}, mx: map[string][]string{}}
	// UDP and TCP on one port: a UDP port whose TCP twin is taken is
	// given back and another one tried.
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		_ = pc.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: listen tcp on a udp port: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: l, Handler: s}
	started := make(chan struct{}, 2)
	udp.NotifyStartedFunc = func() { started <- struct{}{} }
	tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	<-started
	<-started
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	})
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// SetTXT makes name's TXT records values (none: removes them).
func (s *Server) SetTXT(name string, values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txt[dns.Fqdn(strings.ToLower(name))] = values
}

// SetMX makes name's MX records hosts (preference 10 each).
func (s *Server) SetMX(name string, hosts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mx[dns.Fqdn(strings.ToLower(name))] = hosts
}

// Queries is how many questions the server answered.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	s.mu.Lock()
	s.queries++
	found := false
	for _, q := range req.Question {
		name := strings.ToLower(q.Name)
		txt, hasTXT := s.txt[name]
		mx, hasMX := s.mx[name]
		if (hasTXT && len(txt) > 0) || (hasMX && len(mx) > 0) {
			found = true
		}
		hdr := func(t uint16) dns.RR_Header {
			return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 1}
		}
		switch q.Qtype {
		case dns.TypeTXT:
			for _, v := range txt {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: chunks(v)})
			}
		case dns.TypeMX:
			for _, h := range mx {
				m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: 10, Mx: dns.Fqdn(h)})
			}
		}
	}
	s.mu.Unlock()
	if !found {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// chunks splits a TXT value into strings of at most 255 bytes, as DNS
// carries them (a resolver joins them again).
func chunks(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}
