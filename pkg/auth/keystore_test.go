package auth

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// keyFixture stores one key of a new account and returns it.
func keyFixture(t *testing.T, pool *pgxpool.Pool, expires *time.Time) string {
	t.Helper()
	ctx := context.Background()
	acct := uuid.NewString()
	if _, err := pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, acct); err != nil {
		t.Fatal(err)
	}
	key, prefix, hash, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO api_keys (id, account_id, prefix, hash, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		uuid.NewString(), acct, prefix, hash, expires); err != nil {
		t.Fatal(err)
	}
	return key
}

// queries counts the pool's acquisitions: one per query here.
func queries(pool *pgxpool.Pool) int64 { return pool.Stat().AcquireCount() }

func TestKeyStoreRefusesMalformedTokensWithoutAQuery(t *testing.T) {
	db := pgtest.New(t)
	ks := NewKeyStore(db.Pool, time.Minute)
	before := queries(db.Pool)
	for _, tok := range []string{"", "es_", "es_notakey", "es_" + string(make([]byte, 40)), "es_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "es_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", "xx_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		if _, err := ks.Authenticate(context.Background(), tok); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", tok, err)
		}
	}
	if n := queries(db.Pool) - before; n != 0 {
		t.Fatalf("malformed tokens cost %d queries, want 0", n)
	}
}

// A flood of made-up keys fills the negative cache past its bound; a valid
// key stays cached throughout (it used to be wiped with everything at 100k).
func TestKeyStoreFloodDoesNotEvictValidKeys(t *testing.T) {
	db := pgtest.New(t)
	ks := NewKeyStore(db.Pool, time.Hour)
	ctx := context.Background()
	key := keyFixture(t, db.Pool, nil)
	if _, err := ks.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	// Fill the negative cache directly (a real flood would take minutes of
	// queries); then one more refused token overflows it.
	ks.mu.Lock()
	for i := 0; i < maxRefused; i++ {
		ks.refused[fmt.Sprint(i)] = time.Now().Add(time.Hour)
	}
	ks.mu.Unlock()
	bogus, _, _, _ := NewKey()
	if _, err := ks.Authenticate(ctx, bogus); !errors.Is(err, ErrUnauthenticated) {
		t.Fatal(err)
	}
	before := queries(db.Pool)
	if _, err := ks.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if n := queries(db.Pool) - before; n != 0 {
		t.Fatalf("the valid key was evicted by the flood: %d queries", n)
	}
	// The refused token is answered from the negative cache.
	before = queries(db.Pool)
	if _, err := ks.Authenticate(ctx, bogus); !errors.Is(err, ErrUnauthenticated) {
		t.Fatal(err)
	}
	if n := queries(db.Pool) - before; n != 0 {
		t.Fatalf("a refused token was looked up again: %d queries", n)
	}
}

// A cached key is not used past its expires_at, however long the TTL.
func TestKeyStoreHonoursExpiryInCache(t *testing.T) {
	db := pgtest.New(t)
	ks := NewKeyStore(db.Pool, time.Hour)
	var now atomic.Pointer[time.Time]
	t0 := time.Now()
	now.Store(&t0)
	ks.now = func() time.Time { return *now.Load() }
	exp := t0.Add(2 * time.Second)
	key := keyFixture(t, db.Pool, &exp)
	ctx := context.Background()
	if _, err := ks.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	t1 := exp.Add(time.Millisecond)
	now.Store(&t1)
	if _, err := ks.Authenticate(ctx, key); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("expired key accepted from the cache: %v", err)
	}
}
