package limits_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/limits"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

type testBundle struct {
	db      *pgtest.DB
	account string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := pgtest.New(t)
	acct := uuid.NewString()
	_, err := db.Pool.Exec(t.Context(), `INSERT INTO accounts (id, name) VALUES ($1, 'acme')`, acct)
	require.NoError(t, err)
	return &testBundle{db: db, account: acct}
}

func dbSecond(t *testing.T, b *testBundle) int64 {
	var s int64
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT floor(extract(epoch FROM clock_timestamp()))::bigint`).Scan(&s))
	return s
}

// Two limiters on one database stand for two replicas: together they never
// allow more than the rate in one window of the database's clock.
func TestRateAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const rate = 10
	cfg := limits.Config{RateDefault: rate}
	replicas := []*limits.Limiter{limits.New(cfg, b.db.Pool, nil), limits.New(cfg, b.db.Pool, nil)}
	var allowed, refused atomic.Int64
	start := dbSecond(t, b)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			err := replicas[i%2].AllowCall(t.Context(), b.account)
			if err == nil {
				allowed.Add(1)
				return
			}
			require.Equal(t, codes.ResourceExhausted, status.Code(err))
			refused.Add(1)
		})
	}
	wg.Wait()
	windows := dbSecond(t, b) - start + 1
	require.GreaterOrEqual(t, allowed.Load(), int64(rate))
	require.LessOrEqual(t, allowed.Load(), rate*windows)
	if windows < 4 { // 40 calls cannot all fit in fewer than 4 windows of 10
		require.Positive(t, refused.Load())
	}
}

func TestExhaustedDetails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l := limits.New(limits.Config{RateDefault: 1}, b.db.Pool, nil)
	var err error
	for range 3 {
		if err = l.AllowCall(t.Context(), b.account); err != nil {
			break
		}
	}
	require.Error(t, err)
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code())
	var retry *errdetails.RetryInfo
	var qf *errdetails.QuotaFailure
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.QuotaFailure:
			qf = d
		}
	}
	require.NotNil(t, retry)
	require.Positive(t, retry.GetRetryDelay().AsDuration())
	require.LessOrEqual(t, retry.GetRetryDelay().AsDuration(), time.Second)
	require.NotNil(t, qf)
	require.Equal(t, "account:"+b.account, qf.GetViolations()[0].GetSubject())
}

func TestDailyQuotaAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const quota = 25 // chunk 1: exact
	cfg := limits.Config{DailyQuotaDefault: quota}
	replicas := []*limits.Limiter{limits.New(cfg, b.db.Pool, nil), limits.New(cfg, b.db.Pool, nil)}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			n, err := replicas[i%2].Reserve(t.Context(), b.account, 1)
			if err == nil {
				require.Equal(t, 1, n)
				allowed.Add(1)
				return
			}
			require.Equal(t, codes.ResourceExhausted, status.Code(err))
		})
	}
	wg.Wait()
	require.EqualValues(t, quota, allowed.Load())

	// A refund is reusable by the replica that got it back.
	replicas[0].Refund(b.account, 2)
	_, err := replicas[0].Reserve(t.Context(), b.account, 2)
	require.NoError(t, err)
	_, err = replicas[0].Reserve(t.Context(), b.account, 1)
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
}

// With larger quotas replicas take chunks: never more than the quota, and at
// most (replicas-1)*(chunk-1) refused early.
func TestDailyQuotaChunkedBound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const quota, chunk = 1000, 10
	cfg := limits.Config{DailyQuotaDefault: quota}
	replicas := []*limits.Limiter{limits.New(cfg, b.db.Pool, nil), limits.New(cfg, b.db.Pool, nil), limits.New(cfg, b.db.Pool, nil)}
	allowed := 0
	for i := 0; i < 3*quota; i++ {
		if _, err := replicas[i%3].Reserve(t.Context(), b.account, 1); err == nil {
			allowed++
		}
	}
	require.LessOrEqual(t, allowed, quota)
	require.GreaterOrEqual(t, allowed, quota-2*(chunk-1))
}

func TestBatchReservationIsAllOrNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l := limits.New(limits.Config{DailyQuotaDefault: 5}, b.db.Pool, nil)
	_, err := l.Reserve(t.Context(), b.account, 6)
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	n, err := l.Reserve(t.Context(), b.account, 5)
	require.NoError(t, err)
	require.Equal(t, 5, n)
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	def := limits.Limits{Rate: 100, DailyQuota: 1000}
	got, err := limits.Get(ctx, b.db.Pool, b.account, def)
	require.NoError(t, err)
	require.Equal(t, def, got)

	require.NoError(t, limits.Set(ctx, b.db.Pool, b.account, &limits.Override{Value: 5}, nil))
	got, err = limits.Get(ctx, b.db.Pool, b.account, def)
	require.NoError(t, err)
	require.Equal(t, limits.Limits{Rate: 5, DailyQuota: 1000}, got)

	require.NoError(t, limits.Set(ctx, b.db.Pool, b.account, nil, &limits.Override{Value: 0}))
	got, err = limits.Get(ctx, b.db.Pool, b.account, def)
	require.NoError(t, err)
	require.Equal(t, limits.Limits{Rate: 5, DailyQuota: 0}, got, "0 is unlimited, the rate override stays")

	require.NoError(t, limits.Set(ctx, b.db.Pool, b.account, &limits.Override{Default: true}, &limits.Override{Default: true}))
	got, err = limits.Get(ctx, b.db.Pool, b.account, def)
	require.NoError(t, err)
	require.Equal(t, def, got)

	require.Error(t, limits.Set(ctx, b.db.Pool, uuid.NewString(), &limits.Override{Value: 1}, nil), "unknown account")
	require.Error(t, limits.Set(ctx, b.db.Pool, b.account, &limits.Override{Value: -1}, nil))

	// An override of one account does not touch another.
	l := limits.New(limits.Config{RateDefault: 0}, b.db.Pool, nil)
	require.NoError(t, limits.Set(ctx, b.db.Pool, b.account, &limits.Override{Value: 1}, nil))
	other := uuid.NewString()
	for range 5 {
		require.NoError(t, l.AllowCall(ctx, other))
	}
}
