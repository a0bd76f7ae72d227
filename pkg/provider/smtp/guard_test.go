package smtp_test

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
)

// bannerText is what an internal non-SMTP service would volunteer (a NATS
// server's INFO line); it must never come back in a verification's detail.
const bannerText = `INFO {"server_id":"NINTERNALSECRETBANNER","version":"2.12.0"}`

// bannerServer is a loopback listener that writes banner to every
// connection, and counts the connections.
func bannerServer(t *testing.T, banner string) (port int, conns *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	conns = &atomic.Int32{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			_, _ = c.Write([]byte(banner + "\r\n"))
			buf := make([]byte, 512)
			_, _ = c.Read(buf)
			_ = c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, conns
}

// TestCheck_RefusesInternalHosts: with the default guard (public internet
// only), VerifyProvider's check of a host on loopback, by address or by a
// name resolving there, never connects, and says so in our words.
func TestCheck_RefusesInternalHosts(t *testing.T) {
	t.Parallel()
	port, conns := bannerServer(t, bannerText)
	sender := smtp.New(smtp.Options{}) // no guard: public only
	t.Cleanup(func() { _ = sender.Close() })
	for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
		t.Run(host, func(t *testing.T) {
			cfg := config(t, map[string]any{"host": host, "port": port, "tls": "none", "username": user}, password)
			v := sender.Check(ctx(t), cfg)
			require.False(t, v.OK)
			require.Contains(t, v.Detail, "refused by policy")
			require.NotContains(t, v.Detail, "NINTERNALSECRETBANNER")
			require.NotContains(t, v.Detail, "INFO")
			require.NotContains(t, v.Detail, password)
			require.ErrorIs(t, sender.Verify(ctx(t), cfg), netguard.ErrRefused)
		})
	}
	require.Zero(t, conns.Load(), "the guard refuses before connect: the listener saw nothing")
}

// TestCheck_DetailHasNoPeerText: where the policy allows the host, what the
// peer says still never reaches the detail: a non-SMTP banner, a refusing
// greeting's text, an AUTH refusal's text (only its code).
func TestCheck_DetailHasNoPeerText(t *testing.T) {
	t.Parallel()
	sender := smtp.New(smtp.Options{Guard: netguard.AllowAll()})
	t.Cleanup(func() { _ = sender.Close() })

	t.Run("non-smtp banner", func(t *testing.T) {
		port, conns := bannerServer(t, bannerText)
		v := sender.Check(ctx(t), config(t, map[string]any{"host": "127.0.0.1", "port": port, "tls": "none"}, ""))
		require.False(t, v.OK)
		require.Equal(t, int32(1), conns.Load())
		require.Contains(t, v.Detail, "did not answer as an SMTP server")
		require.NotContains(t, v.Detail, "NINTERNALSECRETBANNER")
	})
	t.Run("refusing greeting", func(t *testing.T) {
		port, _ := bannerServer(t, "554 internal-relay.corp.example GREETINGSECRET go away")
		v := sender.Check(ctx(t), config(t, map[string]any{"host": "127.0.0.1", "port": port, "tls": "none"}, ""))
		require.False(t, v.OK)
		require.Contains(t, v.Detail, "SMTP 554")
		require.NotContains(t, v.Detail, "GREETINGSECRET")
		require.NotContains(t, v.Detail, "internal-relay")
	})
	t.Run("auth refused", func(t *testing.T) {
		b := setup(t)
		bad := config(t, map[string]any{"host": "127.0.0.1", "port": b.sink.Port(), "tls": "none", "username": user}, "x"+password)
		v := sender.Check(ctx(t), bad)
		require.False(t, v.OK)
		require.Contains(t, v.Detail, "authentication as "+user+" refused (SMTP 535)")
		require.Equal(t, provider.Unhealthy(), v.Healthy)
		require.NotContains(t, v.Detail, "5.7.8") // the sink's reply text: "535 5.7.8 Authentication failed"
	})
}

// TestSend_RefusesInternalHost: the worker's sender does not deliver to a
// host that is not a public address; the message fails permanently with the
// policy as its reason, and nothing connects.
func TestSend_RefusesInternalHost(t *testing.T) {
	t.Parallel()
	port, conns := bannerServer(t, "220 internal.test ESMTP")
	sender := smtp.New(smtp.Options{Guard: mustGuard(t, "10.0.0.0/8")}) // loopback not allowed
	t.Cleanup(func() { _ = sender.Close() })
	b := &testBundle{sender: sender, cfg: config(t, map[string]any{"host": "127.0.0.1", "port": port, "tls": "none"}, "")}
	out := sender.Send(ctx(t), b.delivery("01JINTERNAL", "bob@example.org"))
	require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	require.ErrorIs(t, out.Err, netguard.ErrRefused)
	require.Contains(t, out.Err.Error(), "not a public internet address")
	require.Zero(t, conns.Load())
}

// TestSend_AllowNets: OUTBOUND_ALLOW_NETS opens loopback (the dev stack).
func TestSend_AllowNets(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sender: smtp.Options{Guard: mustGuard(t, "127.0.0.0/8,::1")}})
	out := b.sender.Send(ctx(t), b.delivery("01JALLOWED", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
}

func mustGuard(t *testing.T, nets string) *netguard.Guard {
	t.Helper()
	g, err := netguard.New(netguard.Config{AllowNets: strings.Split(nets, ",")})
	require.NoError(t, err)
	return g
}
