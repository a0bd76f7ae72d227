package report_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/limits"
	"github.com/namirasoft/email-sender/pkg/testkit/jwttest"
	"github.com/namirasoft/email-sender/pkg/usage"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

func TestReportMethodScopesCoverEveryMethod(t *testing.T) {
	t.Parallel()
	scopes := report.MethodScopes()
	for _, m := range emailsenderv1.ReportService_ServiceDesc.Methods {
		full := "/" + emailsenderv1.ReportService_ServiceDesc.ServiceName + "/" + m.MethodName
		require.Equal(t, auth.ScopeRead, scopes[full], full)
	}
}

func bearer(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// Namirasoft Account tokens through real ReportService calls, and the usage
// records of those calls.
func TestReportTokensAndUsage(t *testing.T) {
	t.Parallel()
	iss := jwttest.New(t)
	iss.AddKey(t, "rogue", "EC")
	b := setupWith(t, setupOpts{cfg: report.Config{API: apigate.Config{
		JWT:   iss.Config(),
		Usage: usage.Config{FlushInterval: 20 * time.Millisecond},
	}}})
	a := b.newAccount(t)
	other := b.newAccount(t)
	id := b.newMessage(t, a, msgSpec{})
	otherID := b.newMessage(t, other, msgSpec{})
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := iss.Claims(a.id, "read")
		mut(c)
		return c
	}
	tests := []struct {
		name  string
		token string
		msg   string
		want  codes.Code
	}{
		{"rs256", iss.Sign(t, jwttest.RSAKey, iss.Claims(a.id, "read")), id, codes.OK},
		{"es256", iss.Sign(t, jwttest.ECKey, iss.Claims(a.id, "email-sender:read")), id, codes.OK},
		{"admin implies read", iss.Sign(t, jwttest.ECKey, iss.Claims(a.id, "admin")), id, codes.OK},
		{"another account's message", iss.Sign(t, jwttest.RSAKey, iss.Claims(a.id, "read")), otherID, codes.NotFound},
		{"send scope only", iss.Sign(t, jwttest.RSAKey, iss.Claims(a.id, "send")), id, codes.PermissionDenied},
		{"expired", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })), id, codes.Unauthenticated},
		{"wrong audience", iss.Sign(t, jwttest.ECKey, with(func(c jwt.MapClaims) { c["aud"] = []string{"x", "y"} })), id, codes.Unauthenticated},
		{"wrong issuer", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["iss"] = "https://account.namirasoft.test.evil" })), id, codes.Unauthenticated},
		{"wrong key for a known kid", iss.SignAs(t, "rogue", jwttest.ECKey, iss.Claims(a.id, "read")), id, codes.Unauthenticated},
		{"alg none", jwttest.None(t, jwttest.ECKey, iss.Claims(a.id, "read")), id, codes.Unauthenticated},
		{"hs256 keyed with the ec public key", iss.HS256WithPublicKey(t, jwttest.ECKey, iss.Claims(a.id, "read")), id, codes.Unauthenticated},
	}
	for _, tt := range tests {
		_, err := b.client.GetMessage(bearer(tt.token), &emailsenderv1.GetMessageRequest{MessageId: tt.msg})
		require.Equal(t, tt.want, status.Code(err), "%s: %v", tt.name, err)
	}

	// Rotation: a key published later verifies after one JWKS refresh.
	time.Sleep(60 * time.Millisecond)
	fetches := iss.Fetches.Load()
	iss.AddKey(t, "ec-2", "EC")
	iss.Publish("ec-2")
	_, err := b.client.GetMessage(bearer(iss.Sign(t, "ec-2", iss.Claims(a.id, "read"))), &emailsenderv1.GetMessageRequest{MessageId: id})
	require.NoError(t, err)
	require.Equal(t, fetches+1, iss.Fetches.Load())

	// Usage: the account's calls (those that got past authentication), and
	// none of another account.
	var recs []*emailsenderv1.UsageRecord
	require.Eventually(t, func() bool {
		resp, err := usage.List(context.Background(), b.db.Pool, a.id, &emailsenderv1.ListUsageRequest{})
		require.NoError(t, err)
		recs = resp.GetRecords()
		return len(recs) == 6
	}, 10*time.Second, 20*time.Millisecond)
	results := map[string]int{}
	for _, r := range recs {
		require.Equal(t, emailsenderv1.ReportService_GetMessage_FullMethodName, r.GetMethod())
		require.Equal(t, "notification-sender", r.GetKeyId())
		require.Equal(t, "127.0.0.1", r.GetClientIp())
		results[r.GetResult()]++
	}
	require.Equal(t, map[string]int{"OK": 4, "NOT_FOUND": 1, "PERMISSION_DENIED": 1}, results)
	resp, err := usage.List(context.Background(), b.db.Pool, other.id, &emailsenderv1.ListUsageRequest{})
	require.NoError(t, err)
	require.Empty(t, resp.GetRecords())
}

// The request rate applies to report calls too (same shared counter).
func TestReportRateLimit(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{cfg: report.Config{API: apigate.Config{Limits: limits.Config{RateDefault: 3}}}})
	a := b.newAccount(t)
	var exhausted int
	for range 12 {
		_, err := b.client.ListMessages(authed(a), &emailsenderv1.ListMessagesRequest{})
		if status.Code(err) == codes.ResourceExhausted {
			exhausted++
			continue
		}
		require.NoError(t, err)
	}
	require.Positive(t, exhausted)
}
