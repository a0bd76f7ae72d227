package report

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/watch"
)

// Request limits.
const (
	defaultPageSize = 50
	maxPageSize     = 500
	defaultRange    = 24 * time.Hour
	defaultBucket   = time.Hour
	minBucket       = time.Minute
	maxBuckets      = 1000
	// maxSubjectFilter bounds subject_contains (characters).
	maxSubjectFilter = 200
)

// reportServer implements emailsenderv1.ReportServiceServer.
type reportServer struct {
	emailsenderv1.UnimplementedReportServiceServer
	store   *store
	log     *slog.Logger
	now     func() time.Time
	watcher *watch.Watcher
}

// WatchEvents streams the caller's events (package watch).
func (s *reportServer) WatchEvents(req *emailsenderv1.WatchEventsRequest, stream emailsenderv1.ReportService_WatchEventsServer) error {
	ctx := stream.Context()
	account, err := accountOf(ctx)
	if err == nil {
		err = s.watcher.Watch(ctx, account, req, stream.Send)
	}
	if err != nil && ctx.Err() != nil {
		return nil // the client went away
	}
	return grpcError(ctx, s.log, "WatchEvents", err)
}

func (s *reportServer) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func accountOf(ctx context.Context) (string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.AccountID == "" {
		return "", errNoPrincipal
	}
	return p.AccountID, nil
}

// GetMessage returns a message of the caller's account.
func (s *reportServer) GetMessage(ctx context.Context, req *emailsenderv1.GetMessageRequest) (*emailsenderv1.GetMessageResponse, error) {
	resp, err := s.getMessage(ctx, req)
	if err != nil {
		return nil, grpcError(ctx, s.log, "GetMessage", err)
	}
	return resp, nil
}

func (s *reportServer) getMessage(ctx context.Context, req *emailsenderv1.GetMessageRequest) (*emailsenderv1.GetMessageResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("message_id", req.GetMessageId())
	if err != nil {
		return nil, err
	}
	return s.store.message(ctx, account, id)
}

// ListMessages lists the caller's messages, newest first.
func (s *reportServer) ListMessages(ctx context.Context, req *emailsenderv1.ListMessagesRequest) (*emailsenderv1.ListMessagesResponse, error) {
	resp, err := s.listMessages(ctx, req)
	if err != nil {
		return nil, grpcError(ctx, s.log, "ListMessages", err)
	}
	return resp, nil
}

func (s *reportServer) listMessages(ctx context.Context, req *emailsenderv1.ListMessagesRequest) (*emailsenderv1.ListMessagesResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	f, err := parseListRequest(req)
	if err != nil {
		return nil, err
	}
	pageSize := f.limit
	f.limit = pageSize + 1 // one more tells whether there is a next page
	msgs, scanEnd, err := s.store.listScan(ctx, account, f)
	if err != nil {
		return nil, err
	}
	resp := &emailsenderv1.ListMessagesResponse{Messages: msgs}
	switch {
	case len(msgs) > pageSize:
		resp.Messages = msgs[:pageSize]
		resp.NextPageToken = encodeCursor(msgs[pageSize-1].GetMessageId())
	case scanEnd != "":
		// A subject search read its bound: older messages may match.
		resp.NextPageToken = encodeCursor(scanEnd)
	}
	return resp, nil
}

func parseListRequest(req *emailsenderv1.ListMessagesRequest) (listFilter, error) {
	f := listFilter{limit: defaultPageSize}
	switch n := req.GetPageSize(); {
	case n < 0:
		return f, invalidField("page_size", "must not be negative")
	case n > maxPageSize:
		f.limit = maxPageSize
	case n > 0:
		f.limit = int(n)
	}
	for _, st := range req.GetStatuses() {
		if _, ok := emailsenderv1.MessageStatus_Value_name[int32(st)]; !ok || st == emailsenderv1.MessageStatus_VALUE_UNSPECIFIED {
			return f, invalidField("statuses", "unknown status %d", st)
		}
		f.statuses = append(f.statuses, int16(st))
	}
	if p := req.GetProviderId(); p != "" {
		id, err := parseID("provider_id", p)
		if err != nil {
			return f, err
		}
		f.providerID = id
	}
	f.recipient = strings.ToLower(strings.TrimSpace(req.GetRecipient()))
	if sub := strings.TrimSpace(req.GetSubjectContains()); sub != "" {
		if utf8.RuneCountInString(sub) > maxSubjectFilter {
			return f, invalidField("subject_contains", "at most %d characters", maxSubjectFilter)
		}
		f.subject = likeContains(sub)
	}
	if tags := req.GetTags(); len(tags) > 0 {
		b, err := json.Marshal(tags)
		if err != nil {
			return f, invalidField("tags", "%v", err)
		}
		f.tagsJSON = string(b)
	}
	var err error
	if f.createdAfter, err = optionalTime("created_after", req.GetCreatedAfter()); err != nil {
		return f, err
	}
	if f.createdBefore, err = optionalTime("created_before", req.GetCreatedBefore()); err != nil {
		return f, err
	}
	if f.createdAfter != nil && f.createdBefore != nil && !f.createdBefore.After(*f.createdAfter) {
		return f, invalidField("created_before", "must be after created_after")
	}
	if tok := req.GetPageToken(); tok != "" {
		if f.afterID, err = decodeCursor(tok); err != nil {
			return f, err
		}
	}
	return f, nil
}

// GetStats counts the caller's messages by status per time bucket and provider.
func (s *reportServer) GetStats(ctx context.Context, req *emailsenderv1.GetStatsRequest) (*emailsenderv1.GetStatsResponse, error) {
	resp, err := s.getStats(ctx, req)
	if err != nil {
		return nil, grpcError(ctx, s.log, "GetStats", err)
	}
	return resp, nil
}

func (s *reportServer) getStats(ctx context.Context, req *emailsenderv1.GetStatsRequest) (*emailsenderv1.GetStatsResponse, error) {
	account, err := accountOf(ctx)
	if err != nil {
		return nil, err
	}
	start, err := optionalTime("start", req.GetStart())
	if err != nil {
		return nil, err
	}
	end, err := optionalTime("end", req.GetEnd())
	if err != nil {
		return nil, err
	}
	if end == nil {
		e := s.clock()
		end = &e
	}
	if start == nil {
		// The hour buckets of the last 24 hours on whole hours (the last
		// one up to end), which the hourly rollup answers (stats.go).
		b := end.Truncate(time.Hour).Add(time.Hour - defaultRange)
		start = &b
	}
	if !end.After(*start) {
		return nil, invalidField("end", "must be after start")
	}
	bucket := defaultBucket
	if b := req.GetBucket(); b != nil {
		if err := b.CheckValid(); err != nil {
			return nil, invalidField("bucket", "%v", err)
		}
		bucket = b.AsDuration()
	}
	if bucket < minBucket {
		return nil, invalidField("bucket", "must be at least %s", minBucket)
	}
	if n := (end.Sub(*start) + bucket - 1) / bucket; n > maxBuckets {
		return nil, invalidField("bucket", "%s over [start, end) makes %d buckets; at most %d", bucket, n, maxBuckets)
	}
	var provider string
	if p := req.GetProviderId(); p != "" {
		if provider, err = parseID("provider_id", p); err != nil {
			return nil, err
		}
	}
	rows, err := s.store.stats(ctx, account, *start, *end, bucket, provider)
	if err != nil {
		return nil, err
	}
	resp := &emailsenderv1.GetStatsResponse{Totals: map[string]int64{}}
	var cur *emailsenderv1.StatsBucket
	for i, r := range rows {
		if cur == nil || !rows[i-1].bucket.Equal(r.bucket) || rows[i-1].providerID != r.providerID {
			// The bucket's map sized for its statuses: 30 days of hour
			// buckets make 32,000 entries, and growing maps cost more than
			// the rest of building the response.
			n := 1
			for n < len(rows)-i && rows[i+n].bucket.Equal(r.bucket) && rows[i+n].providerID == r.providerID {
				n++
			}
			cur = &emailsenderv1.StatsBucket{Start: timestamppb.New(r.bucket), ProviderId: r.providerID, Counts: make(map[string]int64, n)}
			resp.Buckets = append(resp.Buckets, cur)
		}
		name := r.status.String()
		cur.Counts[name] += r.count
		resp.Totals[name] += r.count
	}
	if resp.Reputation, err = s.store.reputationOf(ctx, account, provider, s.clock()); err != nil {
		return nil, err
	}
	return resp, nil
}

func parseID(field, s string) (string, error) {
	if s == "" {
		return "", invalidField(field, "required")
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", invalidField(field, "not a valid id")
	}
	return u.String(), nil
}

func optionalTime(field string, ts *timestamppb.Timestamp) (*time.Time, error) {
	if ts == nil {
		return nil, nil
	}
	if err := ts.CheckValid(); err != nil {
		return nil, invalidField(field, "%v", err)
	}
	t := ts.AsTime()
	return &t, nil
}

// cursorVersion prefixes page tokens so their format can change.
const cursorVersion = 1

// encodeCursor makes the page token that continues after message id.
func encodeCursor(id string) string {
	u := uuid.MustParse(id) // ids come from the database
	return base64.RawURLEncoding.EncodeToString(append([]byte{cursorVersion}, u[:]...))
}

func decodeCursor(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 17 || b[0] != cursorVersion {
		return "", invalidField("page_token", "invalid page token")
	}
	u, err := uuid.FromBytes(b[1:])
	if err != nil {
		return "", invalidField("page_token", "invalid page token")
	}
	return u.String(), nil
}
