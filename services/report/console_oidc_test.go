package report_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/oidcprovider"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/report"
)

func TestConsoleSignInOIDC(t *testing.T) {
	account := uuid.NewString() // provisioned on sign-in, as the JWT path does
	idp := oidcprovider.Start(t, oidcprovider.Config{AutoApprove: true, Users: []oidcprovider.User{{
		Subject: "owner-1", Email: "owner@example.test", AccountID: account, Scopes: []string{"read", "admin"},
	}}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + lis.Addr().String()
	idp.AddRedirectURI(base + "/console/auth/callback")
	// The report's console and ingest's API share the JWT settings: ingest
	// accepts the session's ID token for the console's ingest actions.
	b := setupConsoleIngestOn(t, lis, func(cfg *report.Config, icfg *ingest.Config) {
		cfg.API.JWT = idp.JWTConfig()
		cfg.API.JWT.AutoProvision = true
		icfg.API.JWT = cfg.API.JWT
		cfg.Console.OIDCClientID = idp.ClientID
		cfg.Console.OIDCClientSecret = idp.ClientSecret
		cfg.Console.OIDCRedirectURL = base + "/console/auth/callback"
	})

	br := b.browser(t)
	got := br.get("/console/signin")
	require.Contains(t, got.body, `href="/console/signin/oidc"`)

	start := br.get("/console/signin/oidc")
	require.Equal(t, http.StatusFound, start.code)
	authURL, err := url.Parse(start.location)
	require.NoError(t, err)
	q := authURL.Query()
	require.Equal(t, "S256", q.Get("code_challenge_method"))
	require.NotEmpty(t, q.Get("code_challenge"))
	require.NotEmpty(t, q.Get("state"))
	require.NotEmpty(t, q.Get("nonce"))
	require.Equal(t, idp.ClientID, q.Get("client_id"))

	// The provider signs the user in and sends the browser back with a code.
	var callback string
	cur := authURL
	for range 10 {
		resp, err := br.c.Get(cur.String())
		require.NoError(t, err)
		a := read(t, resp)
		require.NotEmpty(t, a.location, "provider answered %d: %s", a.code, a.body)
		next, err := cur.Parse(a.location)
		require.NoError(t, err)
		if next.Path == "/console/auth/callback" {
			callback = next.String()
			break
		}
		cur = next
	}
	require.NotEmpty(t, callback)

	// Another browser cannot use this code and state.
	thief := b.browser(t)
	resp, err := thief.c.Get(callback)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, read(t, resp).code)

	resp, err = br.c.Get(callback)
	require.NoError(t, err)
	a := read(t, resp)
	require.Equal(t, http.StatusSeeOther, a.code, a.body)
	require.Equal(t, "/console/", a.location)
	got = br.get("/console/")
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "Namirasoft Account · read, admin")
	// Ingest takes the sealed ID token as the JWT path takes any Namirasoft
	// Account token.
	got = br.get("/console/keys")
	require.Equal(t, http.StatusOK, got.code, got.body)

	var (
		method, subject string
		scopes          []string
	)
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT method, subject, scopes FROM console_sessions WHERE account_id = $1`, account).Scan(&method, &subject, &scopes))
	require.Equal(t, "oidc", method)
	require.Equal(t, "owner-1", subject)
	require.Equal(t, []string{"read", "admin"}, scopes)

	// The callback is good once.
	resp, err = br.c.Get(callback)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, read(t, resp).code)

	// A forged callback (a state this browser never started) is refused.
	forged := b.browser(t)
	resp, err = forged.c.Get(base + "/console/auth/callback?code=x&state=y")
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, read(t, resp).code)
}
