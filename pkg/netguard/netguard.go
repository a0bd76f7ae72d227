// Package netguard is the one way out for connections made on a tenant's
// behalf: provider hosts (SMTP servers, SES and Gmail endpoints) and, later,
// webhook URLs. A tenant chooses those hosts, so without a guard a tenant
// could make our processes connect to loopback, the private network or the
// cloud metadata service (169.254.169.254) and read what answers.
//
// The check runs in the dialer's Control hook, after DNS resolution and
// immediately before connect(2), on the address actually dialled: a name that
// resolves to a public address at validation time and to 127.0.0.1 when the
// connection is made (DNS rebinding) is still refused. Operators open
// networks they trust (the dev stack and tests open loopback) with an allow
// list.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every refused connection. Its text never names the
// address: a tenant must not learn how our internal names resolve.
var ErrRefused = errors.New("connection refused by policy: the host is not a public internet address")

// Config is the operator's side of the policy, embedded in each service's
// configuration that connects on a tenant's behalf.
type Config struct {
	// AllowNets are networks tenants' hosts may reach although they are not
	// public (CIDR notation, e.g. "127.0.0.0/8,::1/128" for a local dev
	// stack, "10.20.0.0/16" for an on-premises relay).
	AllowNets []string `env:"OUTBOUND_ALLOW_NETS" help:"networks that tenants' provider and webhook hosts may reach although they are not public, comma-separated CIDRs (e.g. 127.0.0.0/8 for a local dev stack); empty: public internet only"`
}

// Guard decides which addresses may be dialled. A nil or zero Guard allows
// public addresses only: forgetting to configure one fails closed.
type Guard struct {
	allow []netip.Prefix
}

// New parses the allow list.
func New(c Config) (*Guard, error) {
	g := &Guard{}
	for _, s := range c.AllowNets {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				return nil, fmt.Errorf("OUTBOUND_ALLOW_NETS: %q is not a CIDR or an IP address", s)
			}
		}
		g.allow = append(g.allow, p.Masked())
	}
	return g, nil
}

// AllowAll is a guard that allows every address: for tests that dial their
// own loopback servers and do not test the policy.
func AllowAll() *Guard {
	return &Guard{allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
}

// Check reports whether addr may be dialled.
func (g *Guard) Check(addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	if g != nil {
		for _, p := range g.allow {
			if p.Contains(addr) {
				return nil
			}
		}
	}
	if !Public(addr) {
		return ErrRefused
	}
	return nil
}

// Control is a net.Dialer Control hook: it runs after resolution with the
// address about to be connected.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return ErrRefused
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return ErrRefused
	}
	return g.Check(a)
}

// Dialer is a net.Dialer whose every connection passes the guard.
func (g *Guard) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.Control}
}

// DialContext dials through the guard.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return g.Dialer(30*time.Second).DialContext(ctx, network, address)
}

// Transport is an HTTP transport whose connections pass the guard. It uses no
// proxy from the environment: a proxy would connect on our behalf where the
// guard cannot see.
func (g *Guard) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           g.Dialer(30 * time.Second).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// notPublic are the IANA special-purpose ranges that are not globally
// reachable (RFC 6890 and its registry), plus multicast. IPv4-mapped IPv6 is
// unmapped before the check; NAT64 and 6to4 embed an IPv4 address and are
// checked by what they embed.
var notPublic = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // carrier-grade NAT
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, cloud metadata
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.88.99.0/24",  // 6to4 relay anycast (deprecated)
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, broadcast
		"::/128",          // unspecified
		"::1/128",         // loopback
		"::ffff:0:0/96",   // IPv4-mapped (unmapped first; here for safety)
		"64:ff9b:1::/48",  // local-use NAT64
		"100::/64",        // discard-only
		"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, ...)
		"2001:db8::/32",   // documentation
		"fc00::/7",        // unique local
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

var (
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	sixTo = netip.MustParsePrefix("2002::/16")
)

// Public reports whether a is a globally reachable unicast address.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return false
	}
	if nat64.Contains(a) {
		b := a.As16()
		return Public(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	if sixTo.Contains(a) {
		b := a.As16()
		return Public(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	}
	for _, p := range notPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
