package usage_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/usage"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

func withPeer(addr string, md ...string) context.Context {
	host, port, _ := net.SplitHostPort(addr)
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(host), Port: atoi(port)}})
	return metadata.NewIncomingContext(ctx, metadata.Pairs(md...))
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	r, err := usage.New(withDefaults(t, usage.Config{TrustedProxies: []string{"10.0.0.0/8", "::1"}}), nil, nil)
	require.NoError(t, err)
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"untrusted peer: header ignored", withPeer("203.0.113.7:5000", "x-forwarded-for", "1.2.3.4"), "203.0.113.7"},
		{"trusted peer: header used", withPeer("10.1.2.3:5000", "x-forwarded-for", "198.51.100.9"), "198.51.100.9"},
		{"right-most untrusted hop wins", withPeer("10.1.2.3:5000", "x-forwarded-for", "6.6.6.6, 198.51.100.9, 10.9.9.9"), "198.51.100.9"},
		{"all hops trusted: left-most", withPeer("10.1.2.3:5000", "x-forwarded-for", "10.2.2.2, 10.3.3.3"), "10.2.2.2"},
		{"garbage stops the walk", withPeer("10.1.2.3:5000", "x-forwarded-for", "198.51.100.9, junk"), "10.1.2.3"},
		{"trusted peer without header", withPeer("10.1.2.3:5000"), "10.1.2.3"},
		{"ipv6 trusted proxy", withPeer("[::1]:5000", "x-forwarded-for", "2001:db8::1"), "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, r.ClientIP(tt.ctx))
		})
	}
	_, err = usage.New(withDefaults(t, usage.Config{TrustedProxies: []string{"nonsense"}}), nil, nil)
	require.Error(t, err)
}

type testBundle struct {
	db  *pgtest.DB
	rec *usage.Recorder
	// stop ends Run and waits for it.
	stop func()
}

func setup(t *testing.T, cfg usage.Config) *testBundle {
	t.Helper()
	db := pgtest.New(t)
	rec, err := usage.New(withDefaults(t, cfg), db.Pool, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	return &testBundle{db: db, rec: rec, stop: stop}
}

func TestRecordListFilterPaginate(t *testing.T) {
	t.Parallel()
	b := setup(t, usage.Config{FlushInterval: time.Hour, BatchSize: 1000}) // only the shutdown flush writes
	acct, other := uuid.NewString(), uuid.NewString()
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 25 {
		res := "OK"
		if i%5 == 0 {
			res = "PERMISSION_DENIED"
		}
		method := "/emailsender.v1.SendService/SendEmail"
		if i%2 == 1 {
			method = "/emailsender.v1.ReportService/GetMessage"
		}
		b.rec.Add(usage.Record{ID: uuid.Must(uuid.NewV7()), AccountID: acct, At: base.Add(time.Duration(i) * time.Second),
			Method: method, KeyID: "k1", ClientIP: "198.51.100.9", UserAgent: "grpc-go/1", Result: res, Duration: 3 * time.Millisecond})
	}
	b.rec.Add(usage.Record{ID: uuid.Must(uuid.NewV7()), AccountID: other, At: base, Method: "/x/Y", KeyID: "k1", Result: "OK"})
	b.stop() // graceful stop flushes the queue
	require.EqualValues(t, 26, b.rec.Written())

	ctx := auth.WithPrincipal(context.Background(), auth.Principal{AccountID: acct})
	var got []*emailsenderv1.UsageRecord
	tok := ""
	for {
		resp, err := usage.ListUsage(ctx, b.db.Pool, &emailsenderv1.ListUsageRequest{PageSize: 10, PageToken: tok})
		require.NoError(t, err)
		got = append(got, resp.GetRecords()...)
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	require.Len(t, got, 25, "the other account's record is not listed")
	for i := 1; i < len(got); i++ {
		require.True(t, got[i-1].GetTime().AsTime().After(got[i].GetTime().AsTime()), "newest first")
	}
	require.Equal(t, 3.0, got[0].GetDurationMs())
	require.Equal(t, "198.51.100.9", got[0].GetClientIp())

	count := func(req *emailsenderv1.ListUsageRequest) int {
		req.PageSize = 1000
		resp, err := usage.List(context.Background(), b.db.Pool, acct, req)
		require.NoError(t, err)
		return len(resp.GetRecords())
	}
	require.Equal(t, 5, count(&emailsenderv1.ListUsageRequest{Result: "PERMISSION_DENIED"}))
	require.Equal(t, 13, count(&emailsenderv1.ListUsageRequest{Method: "/emailsender.v1.SendService/SendEmail"}))
	require.Equal(t, 12, count(&emailsenderv1.ListUsageRequest{Method: "GetMessage"}))
	require.Equal(t, 25, count(&emailsenderv1.ListUsageRequest{KeyId: "k1"}))
	require.Equal(t, 0, count(&emailsenderv1.ListUsageRequest{KeyId: "k2"}))
	require.Equal(t, 10, count(&emailsenderv1.ListUsageRequest{
		Since: timestamppb.New(base.Add(10 * time.Second)), Until: timestamppb.New(base.Add(20 * time.Second))}))

	// Filters and tokens never reach another account.
	resp, err := usage.List(context.Background(), b.db.Pool, other, &emailsenderv1.ListUsageRequest{KeyId: "k1"})
	require.NoError(t, err)
	require.Len(t, resp.GetRecords(), 1)

	_, err = usage.List(context.Background(), b.db.Pool, acct, &emailsenderv1.ListUsageRequest{PageToken: "garbage"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = usage.ListUsage(context.Background(), b.db.Pool, &emailsenderv1.ListUsageRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
}

func TestQueueOverflowDrops(t *testing.T) {
	t.Parallel()
	rec, err := usage.New(withDefaults(t, usage.Config{QueueSize: 3}), nil, nil) // never run: nothing drains
	require.NoError(t, err)
	for range 5 {
		rec.Add(usage.Record{AccountID: uuid.NewString()})
	}
	require.EqualValues(t, 2, rec.Dropped())
}

func TestCodeName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "OK", usage.CodeName(codes.OK))
	require.Equal(t, "INVALID_ARGUMENT", usage.CodeName(codes.InvalidArgument))
	require.Equal(t, "RESOURCE_EXHAUSTED", usage.CodeName(codes.ResourceExhausted))
}

// withDefaults fills what cfg leaves unset from the env tags, as services do.
func withDefaults(t *testing.T, cfg usage.Config) usage.Config {
	t.Helper()
	require.NoError(t, envconfig.FillDefaults(&cfg, "QueueSize", "BatchSize", "FlushInterval", "Retention"))
	return cfg
}

func TestConfigWithoutDefaultsIsAnError(t *testing.T) {
	t.Parallel()
	_, err := usage.New(usage.Config{QueueSize: 3}, nil, nil)
	require.ErrorContains(t, err, "USAGE_BATCH")
}
