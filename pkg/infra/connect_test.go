package infra_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/infra"
	"github.com/namirasoft/email-sender/pkg/schema"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/testkit/tcprelay"
)

// A service started while PostgreSQL is unreachable waits for it, then opens
// (here as the schema's owner: it migrates).
func TestPostgresWaitsForTheServer(t *testing.T) {
	t.Parallel()
	schemaURL := emptySchema(t)
	u, err := url.Parse(schemaURL)
	require.NoError(t, err)
	upstream := u.Host
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there for now
	u.Host = fmt.Sprintf("127.0.0.1:%d", port)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		pool *pgxpool.Pool
		err  error
	}
	done := make(chan result, 1)
	go func() {
		p, err := infra.Postgres(ctx, envconfig.Postgres{URL: u.String()}, infra.Migrate, quiet())
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("opened without a server: %v", r.err)
	case <-time.After(1500 * time.Millisecond):
	}
	tcprelay.Start(t, fmt.Sprintf("127.0.0.1:%d", port), upstream) // PostgreSQL "comes up"
	r := <-done
	require.NoError(t, r.err)
	defer r.pool.Close()
	pending, err := schema.Pending(ctx, r.pool)
	require.NoError(t, err)
	require.Empty(t, pending, "the owner migrated")
}

// A service that does not own the schema never migrates: it waits until the
// owner has applied every migration it knows.
func TestAwaitSchemaWaitsForTheOwner(t *testing.T) {
	t.Parallel()
	schemaURL := emptySchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		p, err := infra.Postgres(ctx, envconfig.Postgres{URL: schemaURL}, infra.AwaitSchema, quiet())
		if p != nil {
			p.Close()
		}
		done <- err
	}()
	owner, err := pgxpool.New(ctx, schemaURL)
	require.NoError(t, err)
	defer owner.Close()
	select {
	case err := <-done:
		t.Fatalf("opened before the schema was migrated: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	pending, err := schema.Pending(ctx, owner)
	require.NoError(t, err)
	require.NotEmpty(t, pending, "waiting changed nothing")
	_, err = schema.Migrate(ctx, owner)
	require.NoError(t, err)
	require.NoError(t, <-done)
}

// emptySchema is a schema of its own with nothing in it (dropped at the end).
func emptySchema(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, pgtest.URL())
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	_, err = admin.Exec(ctx, "CREATE SCHEMA "+name)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+name+" CASCADE") })
	u, err := pgtest.WithSearchPath(pgtest.URL(), name)
	require.NoError(t, err)
	return u
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
