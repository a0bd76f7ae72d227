package report_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

const (
	providerA = "00000000-0000-7000-8000-00000000000a"
	providerB = "00000000-0000-7000-8000-00000000000b"
)

func TestGetMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.newAccount(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	id := b.newMessage(t, a, msgSpec{
		to: []string{"to@example.com"}, cc: []string{"cc@example.com"}, bcc: []string{"bcc@example.com"},
		tags: map[string]string{"campaign": "spring"}, providerID: providerA, createdAt: t0,
	})
	sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(time.Second))
	sent.ProviderResponse, sent.ProviderMessageId = "250 2.0.0 Ok: queued as ABC", "ABC"
	b.publish(t, context.Background(), sent)
	b.wait(t, "applied", sent.GetEventId())

	got := b.get(t, a, id)
	m := got.GetMessage()
	require.Equal(t, id, m.GetMessageId())
	require.Equal(t, msgstatus.Sent, m.GetStatus())
	require.Equal(t, "sender@example.com", m.GetFrom().GetAddress())
	require.Equal(t, "Sender", m.GetFrom().GetName())
	require.Equal(t, "Hello", m.GetSubject())
	require.Equal(t, providerA, m.GetProviderId())
	require.Equal(t, "sandbox", m.GetProviderKind())
	require.Equal(t, map[string]string{"campaign": "spring"}, m.GetTags())
	require.Equal(t, int32(3), m.GetRecipientCount())
	require.Equal(t, int32(1), m.GetAttempts())
	require.Equal(t, "ABC", m.GetProviderMessageId())
	require.True(t, m.GetCreatedAt().AsTime().Equal(t0))
	require.Nil(t, m.GetSendAt())

	require.Len(t, got.GetRecipients(), 3)
	for i, kind := range []string{"to", "cc", "bcc"} {
		r := got.GetRecipients()[i]
		require.Equal(t, kind, r.GetKind())
		require.Equal(t, msgstatus.Sent, r.GetStatus())
		require.Equal(t, "250 2.0.0 Ok: queued as ABC", r.GetDetail())
	}
	require.Equal(t, []string{queue.EventAccepted, queue.EventSent}, eventTypes(got))
	require.Equal(t, sent.GetEventId(), got.GetEvents()[1].GetEventId())
	require.Equal(t, int32(1), got.GetEvents()[1].GetAttempt())
	require.Equal(t, "250 2.0.0 Ok: queued as ABC", got.GetEvents()[1].GetProviderResponse())
}

func TestGetMessageErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, other := b.newAccount(t), b.newAccount(t)
	id := b.newMessage(t, a, msgSpec{})

	tests := []struct {
		name   string
		caller account
		id     string
		code   codes.Code
		field  string
	}{
		{"another account's message", other, id, codes.NotFound, ""},
		{"no such message", a, uuid.NewString(), codes.NotFound, ""},
		{"malformed id", a, "not-an-id", codes.InvalidArgument, "message_id"},
		{"empty id", a, "", codes.InvalidArgument, "message_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.client.GetMessage(authed(tt.caller), &emailsenderv1.GetMessageRequest{MessageId: tt.id})
			requireCode(t, err, tt.code, tt.field)
		})
	}

	_, err := b.client.GetMessage(authed(a), &emailsenderv1.GetMessageRequest{MessageId: "x"})
	st, _ := status.FromError(err)
	require.Len(t, st.Details(), 1)
	br, ok := st.Details()[0].(*errdetails.BadRequest)
	require.True(t, ok)
	require.Equal(t, "message_id", br.GetFieldViolations()[0].GetField())
}

func TestListMessagesPagination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, other := b.newAccount(t), b.newAccount(t)
	const total = 23
	want := map[string]bool{}
	for range total {
		want[b.newMessage(t, a, msgSpec{})] = true
	}
	otherID := b.newMessage(t, other, msgSpec{})

	seen := map[string]bool{}
	var (
		token  string
		pages  int
		lastID string
	)
	for {
		resp, err := b.client.ListMessages(authed(a), &emailsenderv1.ListMessagesRequest{PageSize: 5, PageToken: token})
		require.NoError(t, err)
		pages++
		require.LessOrEqual(t, len(resp.GetMessages()), 5)
		for _, m := range resp.GetMessages() {
			require.False(t, seen[m.GetMessageId()], "duplicate %s", m.GetMessageId())
			seen[m.GetMessageId()] = true
			if lastID != "" {
				require.Less(t, m.GetMessageId(), lastID, "newest first")
			}
			lastID = m.GetMessageId()
		}
		token = resp.GetNextPageToken()
		if token == "" {
			break
		}
		require.Less(t, pages, 10, "pagination does not end")
	}
	require.Equal(t, want, seen)
	require.Equal(t, 5, pages)

	resp, err := b.client.ListMessages(authed(a), &emailsenderv1.ListMessagesRequest{})
	require.NoError(t, err)
	require.Len(t, resp.GetMessages(), total, "default page size 50 holds all")
	require.Empty(t, resp.GetNextPageToken())

	resp, err = b.client.ListMessages(authed(other), &emailsenderv1.ListMessagesRequest{PageSize: 500})
	require.NoError(t, err)
	require.Len(t, resp.GetMessages(), 1)
	require.Equal(t, otherID, resp.GetMessages()[0].GetMessageId())
}

// TestListMessagesRecipientPages: a recipient's messages page newest first,
// each once even when the address is on it twice, filtered like any list,
// and never another account's.
func TestListMessagesRecipientPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, other := b.newAccount(t), b.newAccount(t)
	var want []string
	for i := range 7 {
		spec := msgSpec{to: []string{"jane@example.com"}, status: msgstatus.Sent}
		switch i % 3 {
		case 1:
			spec.cc = []string{"jane@example.com"} // twice on one message
		case 2:
			spec.status = msgstatus.Failed
		}
		id := b.newMessage(t, a, spec)
		if spec.status == msgstatus.Sent {
			want = append([]string{id}, want...)
		}
		b.newMessage(t, a, msgSpec{to: []string{"joe@example.com"}, status: msgstatus.Sent})
	}
	b.newMessage(t, other, msgSpec{to: []string{"jane@example.com"}, status: msgstatus.Sent})

	var (
		got   []string
		token string
	)
	for range 10 {
		resp, err := b.client.ListMessages(authed(a), &emailsenderv1.ListMessagesRequest{
			Recipient: "jane@example.com", Statuses: []msgstatus.Status{msgstatus.Sent}, PageSize: 2, PageToken: token})
		require.NoError(t, err)
		for _, m := range resp.GetMessages() {
			got = append(got, m.GetMessageId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Equal(t, want, got)
}

func TestListMessagesFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, other := b.newAccount(t), b.newAccount(t)
	base := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

	queued := b.newMessage(t, a, msgSpec{to: []string{"Jane@Example.com"}, providerID: providerA, createdAt: base,
		tags: map[string]string{"campaign": "spring", "tier": "gold"}})
	sent := b.newMessage(t, a, msgSpec{cc: []string{"joe@example.com"}, providerID: providerB, createdAt: base.Add(time.Hour),
		status: msgstatus.Sent, tags: map[string]string{"campaign": "spring"}})
	failed := b.newMessage(t, a, msgSpec{bcc: []string{"jane@example.com"}, providerID: providerA, createdAt: base.Add(2 * time.Hour),
		status: msgstatus.Failed, tags: map[string]string{"campaign": "fall"}})
	// Another account's message matches every filter; it must never show.
	b.newMessage(t, other, msgSpec{to: []string{"jane@example.com"}, providerID: providerA, createdAt: base.Add(time.Hour),
		tags: map[string]string{"campaign": "spring", "tier": "gold"}})

	tests := []struct {
		name string
		req  *emailsenderv1.ListMessagesRequest
		want []string
	}{
		{"no filter", &emailsenderv1.ListMessagesRequest{}, []string{failed, sent, queued}},
		{"one status", &emailsenderv1.ListMessagesRequest{Statuses: []msgstatus.Status{msgstatus.Sent}}, []string{sent}},
		{"statuses", &emailsenderv1.ListMessagesRequest{Statuses: []msgstatus.Status{msgstatus.Queued, msgstatus.Failed}}, []string{failed, queued}},
		{"provider", &emailsenderv1.ListMessagesRequest{ProviderId: providerA}, []string{failed, queued}},
		{"recipient any kind, any case", &emailsenderv1.ListMessagesRequest{Recipient: "JANE@example.COM"}, []string{failed, queued}},
		{"recipient cc", &emailsenderv1.ListMessagesRequest{Recipient: "joe@example.com"}, []string{sent}},
		{"recipient exact only", &emailsenderv1.ListMessagesRequest{Recipient: "jane@example"}, nil},
		{"tag", &emailsenderv1.ListMessagesRequest{Tags: map[string]string{"campaign": "spring"}}, []string{sent, queued}},
		{"tags all", &emailsenderv1.ListMessagesRequest{Tags: map[string]string{"campaign": "spring", "tier": "gold"}}, []string{queued}},
		{"created after", &emailsenderv1.ListMessagesRequest{CreatedAfter: timestamppb.New(base.Add(time.Hour))}, []string{failed, sent}},
		{"created before", &emailsenderv1.ListMessagesRequest{CreatedBefore: timestamppb.New(base.Add(time.Hour))}, []string{queued}},
		{"subject, any case", &emailsenderv1.ListMessagesRequest{SubjectContains: "ELL"}, []string{failed, sent, queued}},
		{"subject none", &emailsenderv1.ListMessagesRequest{SubjectContains: "bye"}, nil},
		{"subject and recipient", &emailsenderv1.ListMessagesRequest{SubjectContains: "hello", Recipient: "jane@example.com"}, []string{failed, queued}},
		{"subject and status", &emailsenderv1.ListMessagesRequest{SubjectContains: "hello", Statuses: []msgstatus.Status{msgstatus.Sent}}, []string{sent}},
		{"range and provider", &emailsenderv1.ListMessagesRequest{
			CreatedAfter: timestamppb.New(base), CreatedBefore: timestamppb.New(base.Add(3 * time.Hour)), ProviderId: providerB,
		}, []string{sent}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := b.client.ListMessages(authed(a), tt.req)
			require.NoError(t, err)
			var got []string
			for _, m := range resp.GetMessages() {
				got = append(got, m.GetMessageId())
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestListMessagesInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.newAccount(t)
	tests := []struct {
		name  string
		req   *emailsenderv1.ListMessagesRequest
		field string
	}{
		{"garbage token", &emailsenderv1.ListMessagesRequest{PageToken: "%%%"}, "page_token"},
		{"token of wrong shape", &emailsenderv1.ListMessagesRequest{PageToken: "AAAA"}, "page_token"},
		{"provider id", &emailsenderv1.ListMessagesRequest{ProviderId: "smtp"}, "provider_id"},
		{"status", &emailsenderv1.ListMessagesRequest{Statuses: []msgstatus.Status{42}}, "statuses"},
		{"page size", &emailsenderv1.ListMessagesRequest{PageSize: -1}, "page_size"},
		{"subject too long", &emailsenderv1.ListMessagesRequest{SubjectContains: strings.Repeat("é", 201)}, "subject_contains"},
		{"empty range", &emailsenderv1.ListMessagesRequest{
			CreatedAfter: timestamppb.New(time.Unix(100, 0)), CreatedBefore: timestamppb.New(time.Unix(100, 0)),
		}, "created_before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.client.ListMessages(authed(a), tt.req)
			requireCode(t, err, codes.InvalidArgument, tt.field)
		})
	}
}

func TestGetStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, other := b.newAccount(t), b.newAccount(t)
	base := time.Date(2030, 3, 4, 8, 0, 0, 0, time.UTC)
	for _, m := range []struct {
		at       time.Duration
		provider string
		status   msgstatus.Status
	}{
		{10 * time.Minute, providerA, msgstatus.Sent},
		{20 * time.Minute, providerA, msgstatus.Sent},
		{30 * time.Minute, providerA, msgstatus.Failed},
		{40 * time.Minute, providerB, msgstatus.Delivered},
		{70 * time.Minute, providerA, msgstatus.Queued},
		{5 * time.Hour, providerA, msgstatus.Sent}, // outside the range
	} {
		b.newMessage(t, a, msgSpec{createdAt: base.Add(m.at), providerID: m.provider, status: m.status})
	}
	b.newMessage(t, other, msgSpec{createdAt: base.Add(10 * time.Minute), providerID: providerA, status: msgstatus.Sent})

	req := &emailsenderv1.GetStatsRequest{
		Start: timestamppb.New(base), End: timestamppb.New(base.Add(2 * time.Hour)), Bucket: durationpb.New(time.Hour),
	}
	resp, err := b.client.GetStats(authed(a), req)
	require.NoError(t, err)
	type bucket struct {
		start    time.Time
		provider string
		counts   map[string]int64
	}
	var got []bucket
	for _, bk := range resp.GetBuckets() {
		got = append(got, bucket{bk.GetStart().AsTime(), bk.GetProviderId(), bk.GetCounts()})
	}
	require.Equal(t, []bucket{
		{base, providerA, map[string]int64{"SENT": 2, "FAILED": 1}},
		{base, providerB, map[string]int64{"DELIVERED": 1}},
		{base.Add(time.Hour), providerA, map[string]int64{"QUEUED": 1}},
	}, got)
	require.Equal(t, map[string]int64{"SENT": 2, "FAILED": 1, "DELIVERED": 1, "QUEUED": 1}, resp.GetTotals())

	req.ProviderId = providerB
	resp, err = b.client.GetStats(authed(a), req)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"DELIVERED": 1}, resp.GetTotals())

	req.ProviderId = ""
	resp, err = b.client.GetStats(authed(other), req)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"SENT": 1}, resp.GetTotals(), "another account's messages never count")

	// Defaults: the last 24 hours in 1 hour buckets.
	recent := b.newMessage(t, a, msgSpec{createdAt: time.Now().Add(-90 * time.Minute), status: msgstatus.Sent})
	require.NotEmpty(t, recent)
	resp, err = b.client.GetStats(authed(a), &emailsenderv1.GetStatsRequest{})
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"SENT": 1}, resp.GetTotals())
	require.Len(t, resp.GetBuckets(), 1)
}

func TestGetStatsInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.newAccount(t)
	now := time.Now()
	tests := []struct {
		name  string
		req   *emailsenderv1.GetStatsRequest
		field string
	}{
		{"bucket under a minute", &emailsenderv1.GetStatsRequest{Bucket: durationpb.New(30 * time.Second)}, "bucket"},
		{"too many buckets", &emailsenderv1.GetStatsRequest{
			Start: timestamppb.New(now.Add(-1001 * time.Hour)), End: timestamppb.New(now), Bucket: durationpb.New(time.Hour),
		}, "bucket"},
		{"end before start", &emailsenderv1.GetStatsRequest{Start: timestamppb.New(now), End: timestamppb.New(now.Add(-time.Hour))}, "end"},
		{"provider id", &emailsenderv1.GetStatsRequest{ProviderId: "ses"}, "provider_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.client.GetStats(authed(a), tt.req)
			requireCode(t, err, codes.InvalidArgument, tt.field)
		})
	}
	// Exactly 1000 buckets is fine.
	_, err := b.client.GetStats(authed(a), &emailsenderv1.GetStatsRequest{
		Start: timestamppb.New(now.Add(-1000 * time.Minute)), End: timestamppb.New(now), Bucket: durationpb.New(time.Minute),
	})
	require.NoError(t, err)
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.newAccount(t)
	sendOnly := b.newAccount(t, auth.ScopeSend)
	revoked := b.newAccount(t)
	_, err := b.db.Pool.Exec(context.Background(), `UPDATE api_keys SET revoked_at = now() WHERE account_id = $1`, revoked.id)
	require.NoError(t, err)
	id := b.newMessage(t, a, msgSpec{})

	tests := []struct {
		name string
		ctx  context.Context
		code codes.Code
	}{
		{"no key", context.Background(), codes.Unauthenticated},
		{"not bearer", metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic abc"), codes.Unauthenticated},
		{"unknown key", authed(account{key: "es_" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}), codes.Unauthenticated},
		{"revoked key", authed(revoked), codes.Unauthenticated},
		{"key without read scope", authed(sendOnly), codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.client.GetMessage(tt.ctx, &emailsenderv1.GetMessageRequest{MessageId: id})
			requireCode(t, err, tt.code, "")
			_, err = b.client.ListMessages(tt.ctx, &emailsenderv1.ListMessagesRequest{})
			requireCode(t, err, tt.code, "")
			_, err = b.client.GetStats(tt.ctx, &emailsenderv1.GetStatsRequest{})
			requireCode(t, err, tt.code, "")
		})
	}

	// Health needs no key.
	h, err := healthpb.NewHealthClient(b.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: emailsenderv1.ReportService_ServiceDesc.ServiceName})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.GetStatus())
}
