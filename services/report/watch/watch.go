// Package watch serves ReportService.WatchEvents: an account's events as they
// happen, from the EMAIL_EVENTS stream.
//
// # Why the stream, and what a cursor is
//
// Every event of an account is on EMAIL_EVENTS under events.<account>.<message>
// (the worker's delivery events, ingest's ACCEPTED/SCHEDULED and CANCELED
// events, the report's SES feedback and WEBHOOK_DISABLED events), in one total
// order: the stream sequence. A watch is an ordered consumer (ephemeral, no
// acks, flow controlled by the server) filtered on the account's subjects
// (or on events.<account>.<message> for each message asked for), started at a
// stream sequence. A cursor is the stream sequence of the last event a
// response covers, so resuming at cursor+1 has no gap and no duplicate; the
// filters (types, tags) that the stream cannot apply are applied here, and
// heartbeats carry the cursor of the last event examined, so a resumed watch
// does not examine what was filtered out again.
//
// A PostgreSQL cursor (the report's events table) would have to deal with
// rows committed out of order, which the stream sequence does not have.
//
// A cursor is good for as long as the stream keeps events (EventMaxAge, 7 days
// by default): when the stream's first sequence has passed it, events may be
// missing and the watch is refused with OUT_OF_RANGE instead of resuming with
// a gap. A cursor beyond the stream's last sequence is INVALID_ARGUMENT.
//
// # Flow control
//
// The consumer pulls at most Config.Buffer events ahead of what was sent; the
// sending goroutine blocks in gRPC's Send while the client's flow-control
// window is full, so a slow client holds at most Buffer events (plus gRPC's
// window) in the server's memory, and JetStream simply waits.
package watch

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/apierr"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Limits of a request.
const (
	MaxMessageIDs = 100
	MaxTags       = 20
	MaxTypes      = 32
)

// TagSource looks up messages' tags, within an account. Messages it does not
// know are left out of the answer.
type TagSource interface {
	Tags(ctx context.Context, accountID string, messageIDs []string) (map[string]map[string]string, error)
}

// Config tunes watches.
type Config struct {
	// Heartbeat is how often an idle watch sends a heartbeat. Default 15s.
	Heartbeat time.Duration
	// Buffer is how many events a watch pulls ahead of what it has sent. Default 256.
	Buffer int
	// TagCache is how many messages' tags a watch remembers. Default 10000.
	TagCache int
}

func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.Buffer <= 0 {
		c.Buffer = 256
	}
	if c.TagCache <= 0 {
		c.TagCache = 10_000
	}
	return c
}

// Watcher serves watches.
type Watcher struct {
	js   jetstream.JetStream
	tags TagSource
	log  *slog.Logger
	cfg  Config
}

// New returns a Watcher.
func New(js jetstream.JetStream, tags TagSource, log *slog.Logger, cfg Config) *Watcher {
	return &Watcher{js: js, tags: tags, log: log, cfg: cfg.withDefaults()}
}

// EncodeCursor is the cursor of stream sequence seq.
func EncodeCursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("e1:" + strconv.FormatUint(seq, 10)))
}

// DecodeCursor is the stream sequence of cursor.
func DecodeCursor(cursor string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || !strings.HasPrefix(string(b), "e1:") {
		return 0, apierr.InvalidField("cursor", "not a cursor of WatchEvents")
	}
	seq, err := strconv.ParseUint(string(b[3:]), 10, 64)
	if err != nil {
		return 0, apierr.InvalidField("cursor", "not a cursor of WatchEvents")
	}
	return seq, nil
}

// filter is a validated request.
type filter struct {
	subjects []string
	types    map[string]bool
	tags     map[string]string
}

func parse(accountID string, req *emailsenderv1.WatchEventsRequest) (filter, error) {
	f := filter{tags: req.GetTags()}
	if len(req.GetMessageIds()) > MaxMessageIDs {
		return f, apierr.InvalidField("message_ids", "at most %d", MaxMessageIDs)
	}
	if len(f.tags) > MaxTags {
		return f, apierr.InvalidField("tags", "at most %d", MaxTags)
	}
	if len(req.GetTypes()) > MaxTypes {
		return f, apierr.InvalidField("types", "at most %d", MaxTypes)
	}
	seen := map[string]bool{}
	for i, id := range req.GetMessageIds() {
		u, err := uuid.Parse(id)
		if err != nil {
			return f, apierr.InvalidField(fmt.Sprintf("message_ids[%d]", i), "not a message id")
		}
		if !seen[u.String()] {
			seen[u.String()] = true
			f.subjects = append(f.subjects, queue.EventSubject(accountID, u.String()))
		}
	}
	if len(f.subjects) == 0 {
		f.subjects = []string{queue.EventAccountFilter(accountID)}
	}
	if len(req.GetTypes()) > 0 {
		f.types = map[string]bool{}
		for _, t := range req.GetTypes() {
			f.types[strings.ToUpper(strings.TrimSpace(t))] = true
		}
	}
	return f, nil
}

// Watch streams accountID's events matching req to send until ctx ends or
// send fails. Errors carry gRPC statuses where they are the caller's.
func (w *Watcher) Watch(ctx context.Context, accountID string, req *emailsenderv1.WatchEventsRequest, send func(*emailsenderv1.WatchEventsResponse) error) error {
	f, err := parse(accountID, req)
	if err != nil {
		return err
	}
	stream, err := w.js.Stream(ctx, queue.EventStream)
	if err != nil {
		return fmt.Errorf("watch: events stream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("watch: events stream: %w", err)
	}
	last := info.State.LastSeq
	var start uint64
	switch {
	case req.GetCursor() != "":
		seq, err := DecodeCursor(req.GetCursor())
		if err != nil {
			return err
		}
		if seq > last {
			return apierr.InvalidField("cursor", "not a cursor of WatchEvents")
		}
		if seq+1 < info.State.FirstSeq {
			return status.Error(codes.OutOfRange, "cursor: the events after it are no longer retained; start a new watch (and catch up with ListMessages)")
		}
		start = seq + 1
	case req.GetFromStart():
		start = max(info.State.FirstSeq, 1)
	default:
		start = last + 1
	}
	cons, err := w.js.OrderedConsumer(ctx, queue.EventStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: f.subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return fmt.Errorf("watch: consumer: %w", err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(w.cfg.Buffer))
	if err != nil {
		return fmt.Errorf("watch: consume: %w", err)
	}
	defer iter.Stop()

	msgs := make(chan jetstream.Msg)
	errc := make(chan error, 1)
	go func() {
		defer close(msgs)
		for {
			m, err := iter.Next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	stop := context.AfterFunc(ctx, iter.Stop)
	defer stop()

	cursor := start - 1
	if err := send(&emailsenderv1.WatchEventsResponse{Cursor: EncodeCursor(cursor)}); err != nil {
		return err
	}
	tags := newTagCache(w.tags, accountID, w.cfg.TagCache)
	beat := time.NewTicker(w.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-beat.C:
			if err := send(&emailsenderv1.WatchEventsResponse{Cursor: EncodeCursor(cursor)}); err != nil {
				return err
			}
		case m, ok := <-msgs:
			if !ok {
				err := <-errc
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("watch: %w", err)
			}
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("watch: metadata: %w", err)
			}
			cursor = md.Sequence.Stream
			resp, ok, err := w.convert(ctx, accountID, m, f, tags)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			resp.Cursor = EncodeCursor(cursor)
			if err := send(resp); err != nil {
				return err
			}
			beat.Reset(w.cfg.Heartbeat)
		}
	}
}

// convert turns a stream message into a response, and says whether it passes
// the filters. Undecodable messages are skipped (the report's consumer
// terminates them).
func (w *Watcher) convert(ctx context.Context, accountID string, m jetstream.Msg, f filter, tags *tagCache) (*emailsenderv1.WatchEventsResponse, bool, error) {
	var pb queuev1.DeliveryEvent
	if err := proto.Unmarshal(m.Data(), &pb); err != nil || pb.GetAccountId() != accountID {
		return nil, false, nil
	}
	if f.types != nil && !f.types[pb.GetType()] {
		return nil, false, nil
	}
	resp := &emailsenderv1.WatchEventsResponse{Event: MessageEvent(&pb)}
	switch {
	case pb.GetWebhookId() != "":
		resp.WebhookId = pb.GetWebhookId()
	case queue.ProviderEvent(pb.GetType()):
		resp.ProviderId = pb.GetProviderId()
	default:
		resp.MessageId = pb.GetMessageId()
		t, err := tags.get(ctx, pb.GetMessageId())
		if err != nil {
			return nil, false, fmt.Errorf("watch: tags: %w", err)
		}
		resp.Tags = t
	}
	for k, v := range f.tags {
		if got, ok := resp.Tags[k]; !ok || got != v {
			return nil, false, nil
		}
	}
	return resp, true, nil
}

// MessageEvent is the API form of a stream event.
func MessageEvent(pb *queuev1.DeliveryEvent) *emailsenderv1.MessageEvent {
	return &emailsenderv1.MessageEvent{
		EventId:          pb.GetEventId(),
		Type:             pb.GetType(),
		Status:           pb.GetStatus(),
		OccurredAt:       pb.GetOccurredAt(),
		Attempt:          pb.GetAttempt(),
		Recipients:       pb.GetRecipients(),
		ProviderResponse: pb.GetProviderResponse(),
		ErrorClass:       pb.GetErrorClass(),
		Detail:           pb.GetDetail(),
		RetryAt:          pb.GetRetryAt(),
	}
}

// tagCache remembers messages' tags for one watch; it forgets everything
// when full (a watch sees mostly recent messages).
type tagCache struct {
	src     TagSource
	account string
	max     int
	m       map[string]map[string]string
}

func newTagCache(src TagSource, account string, max int) *tagCache {
	return &tagCache{src: src, account: account, max: max, m: map[string]map[string]string{}}
}

func (c *tagCache) get(ctx context.Context, messageID string) (map[string]string, error) {
	if t, ok := c.m[messageID]; ok {
		return t, nil
	}
	got, err := c.src.Tags(ctx, c.account, []string{messageID})
	if err != nil {
		return nil, err
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	t := got[messageID]
	if t == nil {
		t = map[string]string{}
	}
	c.m[messageID] = t
	return t, nil
}
