package suppression_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

func account(t *testing.T, db *pgtest.DB) string {
	t.Helper()
	id := uuid.NewString()
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, id)
	require.NoError(t, err)
	return id
}

func suppressed(t *testing.T, db *pgtest.DB, acc string) map[string]string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT address, reason FROM suppressions WHERE account_id = $1`, acc)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var a, r string
		require.NoError(t, rows.Scan(&a, &r))
		out[a] = r
	}
	return out
}

func TestRules(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	acc := account(t, db)
	rules := suppression.New(db.Pool, suppression.Config{SoftBounces: 3, SoftBounceWindow: 24 * time.Hour})
	now := time.Now()
	apply := func(msg string, at time.Time, marks ...suppression.Mark) map[string]string {
		t.Helper()
		got, err := rules.Apply(ctx, acc, msg, marks, at)
		require.NoError(t, err)
		return got
	}
	bounced := func(addr string, c bounce.Class) suppression.Mark {
		return suppression.Mark{Address: addr, Type: c.Event(), Class: c}
	}

	// Immediate: hard and complaint. Never: policy, message, auto-reply.
	got := apply(uuid.NewString(), now, bounced("hard@x.example", bounce.Hard), bounced("angry@x.example", bounce.Complaint),
		bounced("policy@x.example", bounce.Policy), bounced("big@x.example", bounce.Message), bounced("ooo@x.example", bounce.AutoReply))
	require.Equal(t, map[string]string{"hard@x.example": "bounce", "angry@x.example": "complaint"}, got)
	// A complaint after a bounce keeps the first reason.
	got = apply(uuid.NewString(), now, bounced("hard@x.example", bounce.Complaint))
	require.Equal(t, map[string]string{"hard@x.example": "bounce"}, got)

	// Soft: three distinct messages in a row; the same message twice counts once.
	m1, m2, m3 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	require.Empty(t, apply(m1, now, bounced("full@x.example", bounce.Soft)))
	require.Empty(t, apply(m1, now, bounced("full@x.example", bounce.Soft)))
	require.Empty(t, apply(m2, now.Add(time.Hour), bounced("full@x.example", bounce.Soft)))
	require.Equal(t, map[string]string{"full@x.example": "bounce"}, apply(m3, now.Add(2*time.Hour), bounced("full@x.example", bounce.Soft)))

	// A delivery in between starts over.
	require.Empty(t, apply(uuid.NewString(), now, bounced("flaky@x.example", bounce.Soft)))
	require.Empty(t, apply(uuid.NewString(), now, bounced("flaky@x.example", bounce.Soft)))
	require.Empty(t, apply(uuid.NewString(), now, suppression.Mark{Address: "flaky@x.example", Type: "DELIVERED"}))
	require.Empty(t, apply(uuid.NewString(), now, bounced("flaky@x.example", bounce.Soft)))
	require.Empty(t, apply(uuid.NewString(), now, bounced("flaky@x.example", bounce.Soft)))

	// So does a gap longer than the window.
	require.Empty(t, apply(uuid.NewString(), now, bounced("slow@x.example", bounce.Soft)))
	require.Empty(t, apply(uuid.NewString(), now.Add(time.Hour), bounced("slow@x.example", bounce.Soft)))
	require.Empty(t, apply(uuid.NewString(), now.Add(48*time.Hour), bounced("slow@x.example", bounce.Soft)))

	require.Equal(t, map[string]string{"hard@x.example": "bounce", "angry@x.example": "complaint", "full@x.example": "bounce"}, suppressed(t, db, acc))

	// 0: soft bounces never suppress.
	never := suppression.New(db.Pool, suppression.Config{})
	for range 5 {
		got, err := never.Apply(ctx, acc, uuid.NewString(), []suppression.Mark{bounced("never@x.example", bounce.Soft)}, now)
		require.NoError(t, err)
		require.Empty(t, got)
	}
}
