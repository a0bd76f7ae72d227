package e2e

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/testkit/sestest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Isolation of the hosts a tenant names (security review points 1 and 4):
// the services connect on a tenant's behalf only to public addresses (plus
// OUTBOUND_ALLOW_NETS), never echo what an internal service says, and a
// sender a provider's identity check vouched for is bound to that provider.

// internalService is a loopback listener that greets every connection with
// banner (an internal non-SMTP service); conns counts the connections.
func internalService(t *testing.T, banner string) (port int, conns *atomic.Int32) {
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
			buf := make([]byte, 256)
			_, _ = c.Read(buf)
			_ = c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, conns
}

// TestIsolationInternalSMTPHostRefused: in a deployment without
// OUTBOUND_ALLOW_NETS, an smtp provider pointed at an internal service (a
// loopback port here) is refused by VerifyProvider and by the worker: the
// message FAILS at once with the policy as its reason, the service sees no
// connection and nothing of its banner comes back.
func TestIsolationInternalSMTPHostRefused(t *testing.T) {
	t.Parallel()
	const banner = `INFO {"server_id":"NE2EINTERNALBANNER","version":"2.12.0"}`
	port, conns := internalService(t, banner)
	s := newStack(t, stackOptions{outboundPublicOnly: true})
	ctx := s.ctx("a")
	p, err := s.account.PutProvider(ctx, &v1.PutProviderRequest{Name: "internal", Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: "localhost", Port: int32(port), TlsMode: "none"}}})
	require.NoError(t, err)
	prov := p.GetProvider().GetId()

	v, err := s.account.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: prov})
	require.NoError(t, err)
	require.False(t, v.GetResult().GetOk())
	require.Contains(t, v.GetResult().GetDetail(), "refused by policy")
	require.NotContains(t, v.GetResult().GetDetail(), "NE2EINTERNALBANNER")

	req := simple("jane@example.com")
	req.ProviderId = prov
	id := s.sendOK("a", req)
	resp := s.waitStatus("a", id, v1.MessageStatus_FAILED)
	require.Contains(t, resp.GetMessage().GetLastError(), "refused by policy")
	require.NotContains(t, resp.GetMessage().GetLastError(), "NE2EINTERNALBANNER")
	require.Zero(t, conns.Load(), "neither ingest nor the worker connected")
}

// TestIsolationSESIdentitySenderBoundToProvider: a domain verified as an SES
// identity of the account's SES provider is a sender for that provider only;
// through the account's SMTP provider the send is refused at ingest with
// FAILED_PRECONDITION on message.from.address.
func TestIsolationSESIdentitySenderBoundToProvider(t *testing.T) {
	t.Parallel()
	emu := sestest.StartEmulator(t)
	fake := sestest.NewFake(t)
	fake.ForwardTo(emu.URL)
	fake.SetIdentity("brand.example", true)
	s := newStack(t, sesStack(fake.URL))
	prov := s.putSES("a", "ses", "AKIAE2EBINDING000001")
	added, err := s.account.AddSender(s.ctx("a"), &v1.AddSenderRequest{Address: "brand.example", ProviderId: prov})
	require.NoError(t, err)
	require.Equal(t, "ses_identity", added.GetSender().GetMethod())
	require.Equal(t, "verified", added.GetSender().GetStatus())

	req := simple("jane@example.com")
	req.Message.From = &v1.Address{Address: "news@brand.example"}
	_, err = s.send.SendEmail(s.ctx("a"), req) // the default provider: the SMTP sink
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "err: %v", err)
	require.Contains(t, status.Convert(err).Message(), "message.from.address")

	req.ProviderId = prov
	id := s.sendOK("a", req)
	s.waitStatus("a", id, v1.MessageStatus_SENT)
}
