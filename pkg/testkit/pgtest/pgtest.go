// Package pgtest gives each test its own PostgreSQL schema on a real server, with
// every migration applied, dropped again when the test ends.
//
// The server comes from DATABASE_URL, or postgres://postgres@127.0.0.1:5432/test
// when it is unset (scripts/pg.sh starts a throwaway cluster there on machines
// without one).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/schema"
)

// DefaultURL is used when DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the server the tests use.
func URL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// DB is one test's isolated database: a schema of its own on the shared server.
type DB struct {
	Pool *pgxpool.Pool
	// URL connects to the same schema (search_path set), for services under test
	// that build their own pool.
	URL    string
	Schema string
}

// New creates a fresh schema, migrates it and returns a pool bound to it. The
// schema is dropped in t.Cleanup.
func New(t testing.TB) *DB {
	t.Helper()
	db := NewEmpty(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := schema.Migrate(ctx, db.Pool); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
	return db
}

// NewEmpty is New without the migrations: an empty schema, e.g. to migrate
// it step by step (schema.MigrateTo).
func NewEmpty(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("pgtest: random schema name: %v", err)
	}
	name := "t_" + hex.EncodeToString(b[:])

	admin, err := pgxpool.New(ctx, URL())
	if err != nil {
		t.Fatalf("pgtest: connect %s: %v", redact(URL()), err)
	}
	defer admin.Close()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("pgtest: create schema (is PostgreSQL running? DATABASE_URL=%s): %v", redact(URL()), err)
	}

	url, err := WithSearchPath(URL(), name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgtest: parse url: %v", err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgxpool.New(ctx, URL())
		if err != nil {
			t.Logf("pgtest: drop schema %s: %v", name, err)
			return
		}
		defer admin.Close()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Logf("pgtest: drop schema %s: %v", name, err)
		}
	})
	return &DB{Pool: pool, URL: url, Schema: name}
}

// WithSearchPath returns url with search_path set to schemaName.
func WithSearchPath(url, schemaName string) (string, error) {
	if _, err := pgxpool.ParseConfig(url); err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schemaName, nil
}

func redact(url string) string {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return "(unparseable)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
}
