package bouncedomain_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/bouncedomain"
	"github.com/namirasoft/email-sender/pkg/testkit/dnstest"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

func account(t *testing.T, db *pgtest.DB) string {
	t.Helper()
	id := uuid.NewString()
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, id)
	require.NoError(t, err)
	return id
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: "Bounces.Customer.Example.", want: "bounces.customer.example"},
		{in: " bounces.bücher.example ", want: "bounces.xn--bcher-kva.example"},
		{in: "localhost", wantErr: true},
		{in: "", wantErr: true},
		{in: "a..example", wantErr: true},
		{in: "bounces.example/x", wantErr: true},
		{in: "user@bounces.example", wantErr: true},
		{in: "[192.0.2.1]", wantErr: true},
	} {
		got, err := bouncedomain.Normalize(tc.in)
		if tc.wantErr {
			require.ErrorIs(t, err, address.ErrInvalid, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got)
	}
}

// Verification against a real DNS server (miekg/dns, over UDP and TCP) through
// the resolver DNS_SERVER configures: the token must be in a TXT record at
// the record name; a missing name, other records or another account's token
// are refused; a server that does not answer is a lookup error.
func TestCheck(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	res, err := bouncedomain.ResolverConfig{Server: srv.Addr()}.Resolver()
	require.NoError(t, err)
	const domain = "bounces.customer.example"
	name := bouncedomain.RecordName(domain)
	require.Equal(t, "_emailsender.bounces.customer.example", name)
	for _, tc := range []struct {
		name    string
		records []string
		token   string
		want    string // "" ok, "check" CheckError
	}{
		{name: "holds the token", records: []string{"v=spf1 -all", bouncedomain.RecordValue("abc")}, token: "abc"},
		{name: "no record", token: "abc", want: "check"},
		{name: "another token", records: []string{bouncedomain.RecordValue("other")}, token: "abc", want: "check"},
		{name: "token without the prefix", records: []string{"abc"}, token: "abc", want: "check"},
		{name: "the token inside a longer value", records: []string{bouncedomain.RecordValue("abcdef")}, token: "abc", want: "check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetTXT(name, tc.records...)
			err := bouncedomain.Check(t.Context(), res, domain, tc.token)
			var ce *bouncedomain.CheckError
			switch tc.want {
			case "":
				require.NoError(t, err)
			case "check":
				require.ErrorAs(t, err, &ce)
				require.Contains(t, err.Error(), name)
			}
		})
	}
	// A value over 255 bytes travels in several strings and still matches.
	longToken := strings.Repeat("abcdefghij", 30)
	srv.SetTXT(name, bouncedomain.RecordValue(longToken))
	require.NoError(t, bouncedomain.Check(t.Context(), res, domain, longToken))
	require.Positive(t, srv.Queries())

	// Nobody answering: a lookup error, not a verdict.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	silent, err := bouncedomain.ResolverConfig{Server: pc.LocalAddr().String()}.Resolver()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = bouncedomain.Check(ctx, silent, domain, "abc")
	require.ErrorIs(t, err, bouncedomain.ErrLookup)

	_, err = bouncedomain.ResolverConfig{Server: "no-port"}.Resolver()
	require.ErrorContains(t, err, "DNS_SERVER")
}

// A domain is verified for one account at most: A and B both register it;
// A verifies first; B's verification is refused, and so is that of C, who
// registers it later. An account has one domain; registering it again keeps
// its token. Removing frees the domain.
func TestOwnership(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	a, b, c := account(t, db), account(t, db), account(t, db)
	now := time.Now().UTC().Truncate(time.Microsecond)
	const d = "bounces.shared.example"

	ra, err := bouncedomain.Register(ctx, db.Pool, a, d, now)
	require.NoError(t, err)
	require.False(t, ra.Verified())
	again, err := bouncedomain.Register(ctx, db.Pool, a, d, now.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, ra.Token, again.Token, "registering again keeps the token")
	_, err = bouncedomain.Register(ctx, db.Pool, a, "bounces.other.example", now)
	require.ErrorIs(t, err, bouncedomain.ErrOtherDomain)
	rb, err := bouncedomain.Register(ctx, db.Pool, b, d, now)
	require.NoError(t, err, "pending claims of one domain by several accounts are allowed")
	require.NotEqual(t, ra.Token, rb.Token, "each registration has a token of its own")

	failed, err := bouncedomain.Checked(ctx, db.Pool, a, d, false, "no TXT record", now)
	require.NoError(t, err)
	require.False(t, failed.Verified())
	require.Equal(t, "no TXT record", failed.LastCheck)
	ok, err := bouncedomain.Checked(ctx, db.Pool, a, d, true, "", now)
	require.NoError(t, err)
	require.True(t, ok.Verified())
	_, err = bouncedomain.Checked(ctx, db.Pool, b, d, true, "", now)
	require.ErrorIs(t, err, bouncedomain.ErrTaken)
	_, err = bouncedomain.Checked(ctx, db.Pool, c, d, true, "", now)
	require.ErrorIs(t, err, bouncedomain.ErrNotFound, "C never registered it")
	rc, err := bouncedomain.Register(ctx, db.Pool, c, d, now)
	require.NoError(t, err, "a later claim registers, pending, saying nothing of A")
	require.False(t, rc.Verified())
	_, err = bouncedomain.Checked(ctx, db.Pool, c, d, true, "", now)
	require.ErrorIs(t, err, bouncedomain.ErrTaken)

	got, err := bouncedomain.Verified(ctx, db.Pool, a)
	require.NoError(t, err)
	require.Equal(t, d, got)
	got, err = bouncedomain.Verified(ctx, db.Pool, b)
	require.NoError(t, err)
	require.Empty(t, got)
	owners, err := bouncedomain.Owners(ctx, db.Pool)
	require.NoError(t, err)
	require.Equal(t, map[string]string{d: a}, owners)

	_, err = bouncedomain.Remove(ctx, db.Pool, a)
	require.NoError(t, err)
	_, err = bouncedomain.Remove(ctx, db.Pool, a)
	require.ErrorIs(t, err, bouncedomain.ErrNotFound)
	_, err = bouncedomain.Get(ctx, db.Pool, a)
	require.ErrorIs(t, err, bouncedomain.ErrNotFound)
	rb, err = bouncedomain.Checked(ctx, db.Pool, b, d, true, "", now)
	require.NoError(t, err, "freed: B's proof now counts")
	require.True(t, rb.Verified())
	require.False(t, errors.Is(err, bouncedomain.ErrTaken))
}

// The directory loads the verified domains and reloads on an announcement,
// well before its interval.
func TestDirectory(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	nc, _ := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	a := account(t, db)
	now := time.Now()
	_, err := bouncedomain.Register(ctx, db.Pool, a, "bounces.a.example", now)
	require.NoError(t, err)

	dir := bouncedomain.NewDirectory(db.Pool, nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- dir.Run(rctx, nc, time.Hour) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	time.Sleep(100 * time.Millisecond)
	_, ok := dir.Owner("bounces.a.example")
	require.False(t, ok, "pending domains are not in the directory")
	_, err = bouncedomain.Checked(ctx, db.Pool, a, "bounces.a.example", true, "", now)
	require.NoError(t, err)
	require.NoError(t, bouncedomain.Announce(nc))
	require.Eventually(t, func() bool { o, ok := dir.Owner("bounces.a.example"); return ok && o == a }, 5*time.Second, 10*time.Millisecond)

	_, err = bouncedomain.Remove(ctx, db.Pool, a)
	require.NoError(t, err)
	require.NoError(t, bouncedomain.Announce(nc))
	require.Eventually(t, func() bool { return dir.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
}
