package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestPublic(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2001:4860:4860::8888", true},
		{"127.0.0.1", false},
		{"127.255.0.9", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"255.255.255.255", false},
		{"224.0.0.1", false},
		{"198.18.0.1", false},
		{"192.0.2.1", false},
		{"::1", false},
		{"::", false},
		{"fe80::1", false},
		{"fd00::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},    // IPv4-mapped loopback
		{"::ffff:8.8.8.8", true},       // IPv4-mapped public
		{"64:ff9b::7f00:1", false},     // NAT64 of 127.0.0.1
		{"64:ff9b::808:808", true},     // NAT64 of 8.8.8.8
		{"2002:a9fe:a9fe::1", false},   // 6to4 of 169.254.169.254
		{"2002:808:808::1", true},      // 6to4 of 8.8.8.8
		{"2001:db8::1", false},         // documentation
		{"2001:0:4136:e378::1", false}, // Teredo
	} {
		if got := Public(netip.MustParseAddr(tc.addr)); got != tc.public {
			t.Errorf("Public(%s) = %v, want %v", tc.addr, got, tc.public)
		}
	}
}

func TestNew(t *testing.T) {
	g, err := New(Config{AllowNets: []string{"127.0.0.0/8", " ::1 ", "", "10.20.0.0/16"}})
	if err != nil {
		t.Fatal(err)
	}
	for addr, ok := range map[string]bool{"127.0.0.1": true, "::1": true, "10.20.3.4": true, "10.21.0.1": false, "169.254.169.254": false, "8.8.8.8": true} {
		if err := g.Check(netip.MustParseAddr(addr)); (err == nil) != ok {
			t.Errorf("Check(%s) = %v, want allowed=%v", addr, err, ok)
		}
	}
	if _, err := New(Config{AllowNets: []string{"not-a-net"}}); err == nil {
		t.Fatal("New accepted a malformed network")
	}
}

// A loopback listener stands for anything internal: the guard refuses it by
// address and by a name that resolves to it, and lets the allow list open it.
func TestDialRefusesInternal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for _, g := range []*Guard{nil, {}} {
		for _, host := range []string{"127.0.0.1", "localhost", "::ffff:127.0.0.1"} {
			c, err := g.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
			if c != nil {
				c.Close()
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("dial %s: err = %v, want ErrRefused", host, err)
			}
		}
	}
	select {
	case <-accepted:
		t.Fatal("a refused dial reached the listener")
	default:
	}

	open, _ := New(Config{AllowNets: []string{"127.0.0.0/8"}})
	c, err := open.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("allow-listed dial: %v", err)
	}
	c.Close()
	<-accepted
}

func TestTransportRefusesInternalAndIgnoresProxy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("internal secret")) }))
	defer srv.Close()
	// A proxy from the environment would connect for us where the guard
	// cannot see: the transport must not use one.
	t.Setenv("HTTP_PROXY", srv.URL)
	t.Setenv("HTTPS_PROXY", srv.URL)

	client := &http.Client{Transport: (&Guard{}).Transport()}
	_, err := client.Get(srv.URL)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("GET %s: err = %v, want ErrRefused", srv.URL, err)
	}
}
