package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/client"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/partition"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// benchAccount is a measured account.
type benchAccount struct {
	label    string // "big" or "small"
	rank     int
	id       string
	messages int64
	// providers in order of their share, largest first.
	providers []string
	client    *client.Client
	// key is the API key client calls with (the console signs in with it).
	key string
	// sampled are message ids spread over the account's history, typical
	// the first recipient of one of them, deepToken a page token 45 days
	// back: what the console phase asks for too.
	sampled   []string
	typical   string
	deepToken string
}

// shape is one kind of query, called the same way again and again.
type shape struct {
	name    string
	rpc     string
	account *benchAccount
	// requests are cycled through, call i uses requests[i % len].
	requests []proto.Message
	// slowPath: measured to show what a request off the fast path costs,
	// not held to the target.
	slowPath bool
}

// call makes the i-th call of the shape and returns how many items it
// answered (messages, or stats buckets).
func (s shape) call(ctx context.Context, i int) (int, error) {
	c := s.account.client
	switch req := s.requests[i%len(s.requests)].(type) {
	case *emailsenderv1.GetMessageRequest:
		resp, err := c.GetMessage(ctx, req)
		if err != nil {
			return 0, err
		}
		return 1 + len(resp.GetEvents()), nil
	case *emailsenderv1.ListMessagesRequest:
		resp, err := c.ListMessages(ctx, req)
		return len(resp.GetMessages()), err
	case *emailsenderv1.GetStatsRequest:
		resp, err := c.GetStats(ctx, req)
		return len(resp.GetBuckets()), err
	default:
		return 0, fmt.Errorf("unknown request %T", req)
	}
}

// buildShapes makes every shape for the big account and a small one.
func buildShapes(ctx context.Context, db *seededDB, svc *reportService) ([]shape, []*benchAccount, error) {
	ref := db.marker.Reference
	big, err := loadAccount(ctx, db, "big", 0)
	if err != nil {
		return nil, nil, err
	}
	small, err := loadAccount(ctx, db, "small", db.marker.Params.Accounts/2)
	if err != nil {
		return nil, nil, err
	}
	var out []shape
	for _, a := range []*benchAccount{big, small} {
		if a.client, a.key, err = svc.client(ctx, a.id); err != nil {
			return nil, nil, fmt.Errorf("client of the %s account: %w", a.label, err)
		}
		ids, err := sampleIDs(ctx, db, a, ref, 100)
		if err != nil {
			return nil, nil, err
		}
		gets := make([]proto.Message, len(ids))
		for i, id := range ids {
			gets[i] = &emailsenderv1.GetMessageRequest{MessageId: id}
		}
		typical, err := typicalRecipient(ctx, db, a, ids[len(ids)/2])
		if err != nil {
			return nil, nil, err
		}
		// A page token deep in the account's history: the id of a message
		// created 45 days before the reference, as a real page ends there.
		deep, err := a.client.ListMessages(ctx, &emailsenderv1.ListMessagesRequest{
			PageSize: 1, CreatedBefore: timestamppb.New(ref.Add(-45 * 24 * time.Hour))})
		if err != nil {
			return nil, nil, fmt.Errorf("deep page token: %w", err)
		}
		if deep.GetNextPageToken() == "" {
			return nil, nil, fmt.Errorf("the %s account has no messages 45 days back", a.label)
		}
		a.sampled, a.typical, a.deepToken = ids, typical, deep.GetNextPageToken()
		day := 24 * time.Hour
		list := func(r *emailsenderv1.ListMessagesRequest) []proto.Message { return []proto.Message{r} }
		statuses := func(s ...msgstatus.Status) []emailsenderv1.MessageStatus_Value { return s }
		shapes := []shape{
			{name: "get-message", rpc: "GetMessage", requests: gets},
			{name: "list", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{})},
			{name: "list-status", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				Statuses: statuses(msgstatus.Bounced)})},
			{name: "list-statuses", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				Statuses: statuses(msgstatus.Bounced, msgstatus.Failed, msgstatus.Complained)})},
			{name: "list-provider", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				ProviderId: a.providers[len(a.providers)-1]})},
			{name: "list-recipient-top", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				Recipient: topRecipient})},
			{name: "list-recipient", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				Recipient: typical})},
			{name: "list-tag", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				Tags: map[string]string{campaignTagKey: rareCampaign()}})},
			{name: "list-tag-common", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				Tags: map[string]string{commonTagKey: commonTagValue}})},
			{name: "list-range-recent", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				CreatedAfter: timestamppb.New(ref.Add(-day)), CreatedBefore: timestamppb.New(ref)})},
			{name: "list-range-old", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				CreatedAfter: timestamppb.New(ref.Add(-45 * day)), CreatedBefore: timestamppb.New(ref.Add(-44 * day))})},
			{name: "list-combined", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				Statuses: statuses(msgstatus.Delivered), ProviderId: a.providers[0],
				Tags:         map[string]string{commonTagKey: marketingTypeValue},
				CreatedAfter: timestamppb.New(ref.Add(-7 * day)), CreatedBefore: timestamppb.New(ref)})},
			{name: "list-deep", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				PageToken: deep.GetNextPageToken()})},
			{name: "list-deep-status", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				Statuses: statuses(msgstatus.Bounced), PageToken: deep.GetNextPageToken()})},
			// Subject search (subject_contains): every seeded subject says
			// "is on its way", so the first page fills at once; a text no
			// subject has reads the bound of one call (the report's
			// subjectScanRows) and answers an empty page with a token: its
			// cost is the bound's, by design.
			{name: "list-subject-common", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				SubjectContains: "ON ITS WAY"})},
			{name: "list-subject-none", rpc: "ListMessages", requests: list(&emailsenderv1.ListMessagesRequest{
				SubjectContains: "no such subject"})},
			{name: "stats-hour-30d", rpc: "GetStats", requests: []proto.Message{&emailsenderv1.GetStatsRequest{
				Start: timestamppb.New(ref.Truncate(time.Hour).Add(-30 * day)), End: timestamppb.New(ref),
				Bucket: durationpb.New(time.Hour)}}},
			{name: "stats-day-30d", rpc: "GetStats", requests: []proto.Message{&emailsenderv1.GetStatsRequest{
				Start: timestamppb.New(ref.Truncate(day).Add(-30 * day)), End: timestamppb.New(ref),
				Bucket: durationpb.New(day)}}},
			{name: "stats-day-30d-provider", rpc: "GetStats", requests: []proto.Message{&emailsenderv1.GetStatsRequest{
				Start: timestamppb.New(ref.Truncate(day).Add(-30 * day)), End: timestamppb.New(ref),
				Bucket: durationpb.New(day), ProviderId: a.providers[0]}}},
			// The last 24 hours from a start on no whole hour, hour
			// buckets: every hour is split by a bucket boundary, so every
			// message of the range is counted (the slow path).
			{name: "stats-24h-unaligned", rpc: "GetStats", slowPath: true, requests: []proto.Message{&emailsenderv1.GetStatsRequest{
				Start: timestamppb.New(ref.Add(-day)), End: timestamppb.New(ref)}}},
		}
		for i := range shapes {
			shapes[i].account = a
		}
		out = append(out, shapes...)
	}
	return out, []*benchAccount{big, small}, nil
}

// topRecipient is the address the seeding gives most messages in every
// account (address index 0 of the power law).
const topRecipient = "user0@d0.example"

func loadAccount(ctx context.Context, db *seededDB, label string, rank int) (*benchAccount, error) {
	a := &benchAccount{label: label, rank: rank}
	if err := db.pool.QueryRow(ctx, `SELECT id::text, messages FROM `+accountsTable+` WHERE rank = $1`, rank).
		Scan(&a.id, &a.messages); err != nil {
		return nil, fmt.Errorf("load the %s account: %w", label, err)
	}
	rows, err := db.pool.Query(ctx, `SELECT id::text FROM `+providersTable+` WHERE rank = $1 ORDER BY ord`, rank)
	if err != nil {
		return nil, fmt.Errorf("load the %s account's providers: %w", label, err)
	}
	if a.providers, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, fmt.Errorf("load the %s account's providers: %w", label, err)
	}
	return a, nil
}

// sampleIDs picks n message ids of the account spread over its history: the
// first message at or after each of n random times.
func sampleIDs(ctx context.Context, db *seededDB, a *benchAccount, ref time.Time, n int) ([]string, error) {
	days := db.marker.Params.Days
	rng := rand.New(rand.NewPCG(uint64(a.rank), 1))
	var out []string
	for range n {
		at := ref.Add(-time.Duration(rng.Float64() * float64(time.Duration(days)*24*time.Hour)))
		var id string
		err := db.pool.QueryRow(ctx, `
			SELECT id::text FROM messages WHERE account_id = $1 AND id >= $2
			ORDER BY id LIMIT 1`, a.id, partition.IDBound(at)).Scan(&id)
		if err == pgx.ErrNoRows {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sample messages of the %s account: %w", a.label, err)
		}
		out = append(out, id)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the %s account has no messages", a.label)
	}
	return out, nil
}

// typicalRecipient is the first recipient of a message.
func typicalRecipient(ctx context.Context, db *seededDB, a *benchAccount, messageID string) (string, error) {
	var addr string
	if err := db.pool.QueryRow(ctx, `
		SELECT address FROM recipients WHERE account_id = $1 AND message_id = $2 ORDER BY idx LIMIT 1`,
		a.id, messageID).Scan(&addr); err != nil {
		return "", fmt.Errorf("recipient of %s: %w", messageID, err)
	}
	return addr, nil
}

func filterShapes(shapes []shape, only string) []shape {
	var out []shape
	for _, s := range shapes {
		if selected(s.name, only) {
			out = append(out, s)
		}
	}
	return out
}
