// Package send implements the SendService gRPC API: it validates requests,
// checks the sender and resolves the provider configuration (directory: cached
// per replica, kept current over NATS), stores messages through the store's
// transactional outbox and publishes their jobs at once, leaving any job it
// could not publish to the outbox relay. Concurrent calls are stored in one
// transaction and published together (committer: group commit).
package send

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/invalidate"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/ingest/store"
	"github.com/namirasoft/email-sender/services/ingest/templates"
	"github.com/namirasoft/email-sender/services/ingest/validate"
)

// Config tunes the service. The tags are the environment variables (part of
// the ingest service's Config) and the one source of the defaults.
type Config struct {
	Limits validate.Limits
	// MaxBatch bounds the items of one SendBatch.
	MaxBatch int `env:"MAX_BATCH" default:"100" help:"messages per SendBatch"`
	// PublishTimeout bounds how long a call waits for JetStream to acknowledge
	// its jobs before leaving them to the relay.
	PublishTimeout time.Duration `env:"INGEST_PUBLISH_TIMEOUT" default:"2s" help:"wait for JetStream acks in a call"`
	// LookupCacheTTL is how long a verified sender or a provider
	// configuration looked up is reused (directory); changes are announced to
	// every replica, so this bounds only what a lost announcement leaves
	// stale. Zero takes the default; a negative value disables the cache.
	LookupCacheTTL time.Duration `env:"INGEST_LOOKUP_CACHE_TTL" default:"1m" help:"cache of verified senders and provider configurations (changes are announced to every replica; negative disables it)"`
	// CommitWait, CommitBatch, CommitGroups and CommitTimeout tune group
	// commit (committer): concurrent calls are stored in one transaction and
	// their jobs published together.
	CommitWait    time.Duration `env:"INGEST_COMMIT_WAIT" default:"2ms" help:"longest a call waits for concurrent calls to join its group commit (a call alone is committed at once)"`
	CommitBatch   int           `env:"INGEST_COMMIT_BATCH" default:"256" help:"most messages of one group commit (a larger SendBatch is a group of its own)"`
	CommitGroups  int           `env:"INGEST_COMMIT_GROUPS" default:"4" help:"group commit transactions in flight at once"`
	CommitTimeout time.Duration `env:"INGEST_COMMIT_TIMEOUT" default:"10s" help:"bound of one group commit's transaction"`
	// RequireVerifiedSenders refuses a from address that is not a verified
	// sender of the account (FAILED_PRECONDITION naming message.from.address).
	// Its variable, REQUIRE_VERIFIED_SENDERS, is the ingest Config's (true
	// unless set): the zero value here is false.
	RequireVerifiedSenders bool
}

// WithDefaults fills unset fields from the default tags. LookupCacheTTL is
// filled only when zero: a negative TTL disables the cache.
func (c Config) WithDefaults() Config {
	c.Limits = c.Limits.WithDefaults()
	// The names are this type's own fields: an error here is a typo in this
	// list, caught by TestConfigDefaultsAreTheTags.
	_ = envconfig.FillDefaults(&c, "MaxBatch", "PublishTimeout", "CommitWait", "CommitBatch", "CommitGroups", "CommitTimeout")
	if c.LookupCacheTTL == 0 {
		_ = envconfig.FillDefaults(&c, "LookupCacheTTL")
	}
	return c
}

// Validate checks a configuration after WithDefaults; each error names its
// variable.
func (c Config) Validate() error {
	switch {
	case c.MaxBatch <= 0:
		return fmt.Errorf("MAX_BATCH=%d: want 1 or more", c.MaxBatch)
	case c.PublishTimeout <= 0:
		return fmt.Errorf("INGEST_PUBLISH_TIMEOUT=%s: want a positive duration", c.PublishTimeout)
	case c.CommitWait < 0 || c.CommitWait > 100*time.Millisecond:
		return fmt.Errorf("INGEST_COMMIT_WAIT=%s: want 0 to 100ms", c.CommitWait)
	case c.CommitBatch <= 0:
		return fmt.Errorf("INGEST_COMMIT_BATCH=%d: want 1 or more", c.CommitBatch)
	case c.CommitGroups <= 0:
		return fmt.Errorf("INGEST_COMMIT_GROUPS=%d: want 1 or more", c.CommitGroups)
	case c.CommitTimeout <= 0:
		return fmt.Errorf("INGEST_COMMIT_TIMEOUT=%s: want a positive duration", c.CommitTimeout)
	}
	return c.Limits.Validate()
}

// DB is what the service needs of PostgreSQL (a *pgxpool.Pool).
type DB interface {
	store.DBTX
	store.Beginner
}

// Deps are the service's dependencies.
type Deps struct {
	DB        DB
	Publisher queue.Publisher
	// Deleter removes the outbox rows of the jobs the service published.
	Deleter *outbox.Deleter
	// AccountConfig is the feed of sender and provider configuration changes
	// (queue.AccountConfigFeed) that keeps the lookup cache current; nil: no
	// cache.
	AccountConfig *invalidate.Feed
	// Pauses says which provider configurations the reputation guard paused
	// (an *accountstate.View); nil: none are.
	Pauses    Pauses
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Templates renders the messages of requests that name a template
	// (services/ingest/templates); nil: such requests are refused.
	Templates Renderer
}

// Renderer renders a request's template into its message: what is then
// validated and stored.
type Renderer interface {
	RenderMessage(ctx context.Context, accountID string, req *emailsenderv1.SendEmailRequest) (*emailsenderv1.EmailMessage, error)
}

// Pauses is what the send path needs of the provider pauses.
type Pauses interface {
	Paused(ctx context.Context, account, provider string) (accountstate.Pause, error)
}

// Server is the SendService.
type Server struct {
	emailsenderv1.UnimplementedSendServiceServer

	cfg     Config
	db      DB
	pub     queue.Publisher
	deleter *outbox.Deleter
	tel     *telemetry.Telemetry
	log     *slog.Logger
	now     func() time.Time
	dir     *directory
	pauses  Pauses
	commits *committer
	tpl     Renderer

	tracer trace.Tracer
	// accepted counts newly accepted messages (emailsender_messages_accepted_total).
	accepted metric.Int64Counter
	// groupSize is the messages of each group commit
	// (emailsender_ingest_commit_group_messages).
	groupSize metric.Int64Histogram
	byKind    *telemetry.Label
}

// New returns the service.
func New(cfg Config, d Deps) *Server {
	cfg = cfg.WithDefaults()
	now := d.Now
	if now == nil {
		now = time.Now
	}
	tel := d.Telemetry
	if tel == nil {
		tel = telemetry.Nop()
	}
	// Creating an instrument fails only for an invalid name; these are constant.
	meter := tel.Meter("github.com/namirasoft/email-sender/services/ingest")
	accepted, _ := meter.Int64Counter("emailsender_messages_accepted",
		metric.WithDescription("Messages accepted (stored and queued or scheduled), by provider kind; idempotent replays are not counted."),
		metric.WithUnit("{message}"))
	groupSize, _ := meter.Int64Histogram("emailsender_ingest_commit_group_messages",
		metric.WithDescription("Messages stored by one group commit (one transaction for concurrent calls)."),
		metric.WithUnit("{message}"), metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
	s := &Server{
		cfg: cfg, db: d.DB, pub: d.Publisher, deleter: d.Deleter, pauses: d.Pauses, tel: tel, log: d.Logger, now: now, tpl: d.Templates,
		dir:      newDirectory(d.DB, cfg.LookupCacheTTL, now, d.AccountConfig),
		tracer:   tel.Tracer("github.com/namirasoft/email-sender/services/ingest"),
		accepted: accepted, groupSize: groupSize,
		byKind: telemetry.NewLabel("provider_kind"),
	}
	s.commits = newCommitter(s)
	return s
}

// Watch keeps the lookup cache in step with the account configuration feed
// until ctx ends (Deps.AccountConfig; nothing to do without one).
func (s *Server) Watch(ctx context.Context) error { return s.dir.run(ctx) }

// Scopes is the scope each SendService method needs, for auth.Interceptor.
func Scopes() map[string]string {
	return map[string]string{
		emailsenderv1.SendService_SendEmail_FullMethodName:       auth.ScopeSend,
		emailsenderv1.SendService_SendBatch_FullMethodName:       auth.ScopeSend,
		emailsenderv1.SendService_CancelScheduled_FullMethodName: auth.ScopeSend,
	}
}

func caller(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.AccountID == "" {
		return auth.Principal{}, status.Error(codes.Unauthenticated, "no authenticated account")
	}
	return p, nil
}

// SendEmail accepts one message.
func (s *Server) SendEmail(ctx context.Context, req *emailsenderv1.SendEmailRequest) (*emailsenderv1.SendEmailResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	results, err := s.accept(ctx, p.AccountID, []*emailsenderv1.SendEmailRequest{req})
	if err != nil {
		return nil, statusOf(ctx, s.log, err, "").Err()
	}
	if r := results[0]; r.err != nil {
		return nil, statusOf(ctx, s.log, r.err, "").Err()
	}
	return results[0].resp, nil
}

// SendBatch accepts each item on its own; the accepted items are stored in one
// transaction and published together.
func (s *Server) SendBatch(ctx context.Context, req *emailsenderv1.SendBatchRequest) (*emailsenderv1.SendBatchResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if n := len(req.GetMessages()); n > s.cfg.MaxBatch {
		return nil, validate.FieldStatus(codes.ResourceExhausted, "messages",
			fmt.Sprintf("has %d items, over the limit of %d", n, s.cfg.MaxBatch)).Err()
	}
	results, err := s.accept(ctx, p.AccountID, req.GetMessages())
	if err != nil {
		return nil, statusOf(ctx, s.log, err, "").Err()
	}
	out := &emailsenderv1.SendBatchResponse{Results: make([]*emailsenderv1.SendBatchResult, len(results))}
	for i, r := range results {
		if r.err != nil {
			st := statusOf(ctx, s.log, r.err, fmt.Sprintf("messages[%d].", i))
			out.Results[i] = &emailsenderv1.SendBatchResult{ErrorCode: int32(st.Code()), ErrorMessage: st.Message()}
			continue
		}
		out.Results[i] = &emailsenderv1.SendBatchResult{Accepted: r.resp}
	}
	return out, nil
}

// CancelScheduled cancels a SCHEDULED message.
func (s *Server) CancelScheduled(ctx context.Context, req *emailsenderv1.CancelScheduledRequest) (*emailsenderv1.CancelScheduledResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetMessageId()
	now := s.now()
	if err := store.CancelScheduled(ctx, s.db, p.AccountID, id, now); err != nil {
		return nil, statusOf(ctx, s.log, err, "").Err()
	}
	s.log.InfoContext(ctx, "canceled scheduled message", "account_id", p.AccountID, "message_id", id)
	s.publishCanceled(ctx, p.AccountID, id, now)
	return &emailsenderv1.CancelScheduledResponse{MessageId: id, Status: msgstatus.Canceled}, nil
}

// publishCanceled tells the events stream (webhooks, reports) about a cancel.
// The database already holds the event and the status, so a failure here loses
// no state.
func (s *Server) publishCanceled(ctx context.Context, accountID, messageID string, now time.Time) {
	eventID := queue.EventID(messageID, 0, queue.EventCanceled, "")
	data, err := proto.Marshal(&queuev1.DeliveryEvent{
		EventId: eventID, MessageId: messageID, AccountId: accountID, Type: queue.EventCanceled,
		Status: msgstatus.Canceled, OccurredAt: timestamppb.New(now),
	})
	if err != nil {
		s.log.WarnContext(ctx, "encode cancel event", "account_id", accountID, "message_id", messageID, "error", err)
		return
	}
	m := queue.NewMsg(queue.EventSubject(accountID, messageID), eventID, data)
	s.tel.InjectNATS(ctx, m.Header)
	if err := queue.PublishAll(context.WithoutCancel(ctx), s.pub, []*nats.Msg{m}, s.cfg.PublishTimeout, jetstream.WithExpectStream(queue.EventStream))[0]; err != nil {
		s.log.WarnContext(ctx, "publish cancel event", "account_id", accountID, "message_id", messageID, "error", err)
	}
}

type result struct {
	resp *emailsenderv1.SendEmailResponse
	err  error
}

// accept validates, stores and publishes reqs. Item errors are in the results;
// the error is for the whole call (the database is unavailable).
func (s *Server) accept(ctx context.Context, accountID string, reqs []*emailsenderv1.SendEmailRequest) ([]result, error) {
	s.commits.begin()
	committing := false
	defer func() {
		if !committing {
			s.commits.end()
		}
	}()
	now := s.now()
	results := make([]result, len(reqs))
	valid := make([]*validate.Request, len(reqs))
	for i, req := range reqs {
		if req.GetTemplate() != nil {
			// Rendered at acceptance: what is validated, stored and sent
			// is the rendered message (the request itself, as the
			// idempotency key's hash covers it, is left as it came).
			if req, results[i].err = s.render(ctx, accountID, req); results[i].err != nil {
				continue
			}
		}
		if valid[i], results[i].err = validate.SendEmail(req, s.cfg.Limits, now); results[i].err != nil {
			valid[i] = nil
		}
	}
	look, err := s.lookup(ctx, accountID, valid)
	if err != nil {
		return nil, err
	}
	traceparent := s.traceparent(ctx)
	var (
		news  []*store.NewMessage
		index []int
	)
	for i, v := range valid {
		if v == nil {
			continue
		}
		m, err := s.prepare(ctx, accountID, reqs[i], v, now, traceparent, look)
		if err != nil {
			results[i].err = err
			continue
		}
		news = append(news, m)
		index = append(index, i)
	}
	if len(news) == 0 {
		return results, nil
	}
	committing = true
	accepted, err := s.commits.commit(ctx, news)
	if err != nil {
		return nil, err
	}
	for j, a := range accepted {
		i, m := index[j], news[j]
		if a.Err != nil {
			results[i].err = a.Err
			continue
		}
		results[i].resp = &emailsenderv1.SendEmailResponse{MessageId: a.MessageID, Status: a.Status, IdempotentReplay: a.Replay}
		if a.Replay {
			s.log.DebugContext(ctx, "idempotent replay", "account_id", accountID, "message_id", a.MessageID)
			continue
		}
		s.accepted.Add(ctx, 1, s.byKind.Option(m.ProviderKind))
		s.log.DebugContext(ctx, "accepted message", "account_id", accountID, "message_id", m.ID,
			"provider", m.ProviderKind, "recipients", len(m.Recipients), "status", m.Status.String())
	}
	return results, nil
}

// outgoing is what a group commit publishes once its messages are stored:
// the job of each QUEUED message (in the call's trace, one producer span per
// job) and the ACCEPTED or SCHEDULED event of each (outbox.AcceptedEvent).
type outgoing struct {
	jobs  []*nats.Msg
	keys  []store.MessageKey
	spans []trace.Span
	ctxs  []context.Context
	// events: the events of every message; eventOf[i]: the index in events
	// of jobs[i]'s event, -1 when it could not be encoded.
	events  []*nats.Msg
	eventOf []int
}

// add adds the job and event of m, stored now by the call of ctx.
func (o *outgoing) add(ctx context.Context, s *Server, m *store.NewMessage) {
	ev, err := outbox.AcceptedEvent(m.AccountID, m.ID, m.Status, m.CreatedAt, templates.AcceptedDetail(m.Tags))
	if err != nil {
		s.log.WarnContext(ctx, "accepted event", "account_id", m.AccountID, "message_id", m.ID, "error", err)
		ev = nil
	}
	if m.Status != msgstatus.Queued {
		if ev != nil {
			// In the call's trace, like the job the relay publishes when due.
			s.tel.InjectNATS(ctx, ev.Header)
			o.events = append(o.events, ev) // the relay publishes it again when due
		}
		return // the relay publishes the job when due
	}
	msg := queue.NewMsg(m.NATSSubject, m.ID, m.Content)
	// One producer span per job: the worker's delivery spans are its
	// children, so each message has its own branch of the call's trace; its
	// ACCEPTED event is published in that span too.
	pctx, span := s.tracer.Start(ctx, "ingest.publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("message.id", m.ID), attribute.String("messaging.destination.name", m.NATSSubject)))
	s.tel.InjectNATS(pctx, msg.Header)
	o.eventOf = append(o.eventOf, -1)
	if ev != nil {
		s.tel.InjectNATS(pctx, ev.Header)
		o.eventOf[len(o.eventOf)-1] = len(o.events)
		o.events = append(o.events, ev)
	}
	o.jobs = append(o.jobs, msg)
	o.keys = append(o.keys, store.MessageKey{AccountID: m.AccountID, MessageID: m.ID})
	o.spans = append(o.spans, span)
	o.ctxs = append(o.ctxs, ctx)
}

// send puts freshly stored jobs and events on their streams, all at once,
// and waits for their acknowledgements. A job acknowledged with its event
// has its outbox row deleted (by the Deleter); the rest stays in the outbox
// for the relay, which publishes both again.
func (o *outgoing) send(ctx context.Context, s *Server) {
	if len(o.jobs) == 0 && len(o.events) == 0 {
		return
	}
	evErrs, errs := s.publishBoth(ctx, o.events, o.jobs)
	deferred := 0
	var firstErr error
	for i, err := range errs {
		if err == nil {
			switch {
			case o.eventOf[i] < 0:
				err = errors.New("accepted event not encoded")
			case evErrs[o.eventOf[i]] != nil:
				err = fmt.Errorf("accepted event: %w", evErrs[o.eventOf[i]])
			}
		}
		if err != nil {
			o.spans[i].RecordError(err)
			o.spans[i].SetStatus(otelcodes.Error, "deferred to the outbox relay")
		}
		o.spans[i].End()
		if err != nil {
			deferred++
			if firstErr == nil {
				firstErr = err
				s.log.WarnContext(o.ctxs[i], "publish deferred to outbox relay", "account_id", o.keys[i].AccountID,
					"message_id", o.keys[i].MessageID, "error", err)
			}
			continue
		}
		s.deleter.Add(o.keys[i])
	}
	if deferred > 1 {
		s.log.WarnContext(ctx, "publishes deferred to outbox relay", "messages", deferred, "error", firstErr)
	}
}

// publishBoth publishes events (to the events stream) and jobs (to the send
// stream) without waiting in between, then waits for both (queue.PublishAll).
func (s *Server) publishBoth(ctx context.Context, events, jobs []*nats.Msg) (evErrs, jobErrs []error) {
	if !queue.Connected(s.pub) {
		down := func(n int) []error {
			errs := make([]error, n)
			for i := range errs {
				errs[i] = queue.ErrDisconnected
			}
			return errs
		}
		return down(len(events)), down(len(jobs))
	}
	ef, evErrs := queue.PublishAsync(s.pub, events, jetstream.WithExpectStream(queue.EventStream))
	jf, jobErrs := queue.PublishAsync(s.pub, jobs, jetstream.WithExpectStream(queue.SendStream))
	for i, err := range queue.Await(ctx, ef, s.cfg.PublishTimeout) {
		if evErrs[i] == nil {
			evErrs[i] = err
		}
	}
	for i, err := range queue.Await(ctx, jf, s.cfg.PublishTimeout) {
		if jobErrs[i] == nil {
			jobErrs[i] = err
		}
	}
	return evErrs, jobErrs
}

// prepare builds what the store inserts for the valid request v of req.
func (s *Server) prepare(ctx context.Context, accountID string, req *emailsenderv1.SendEmailRequest, v *validate.Request, now time.Time, traceparent string, look *lookups) (*store.NewMessage, error) {
	if err := look.checkSender(v); err != nil {
		return nil, err
	}
	prov, err := s.dir.provider(ctx, accountID, req.GetProviderId())
	if err != nil {
		return nil, err
	}
	if s.pauses != nil {
		pause, err := s.pauses.Paused(ctx, accountID, prov.ID)
		if err != nil {
			return nil, err
		}
		if pause.Paused {
			return nil, &store.PausedProviderError{ID: prov.ID, Reason: pause.Reason}
		}
	}
	if err := look.checkSenderProvider(v, prov.ID); err != nil {
		return nil, err
	}
	id, err := partition.NewMessageID(now) // its partition, by created_at
	if err != nil {
		return nil, err
	}
	st := msgstatus.Queued
	if !v.SendAt.IsZero() {
		st = msgstatus.Scheduled
	}
	content, err := proto.Marshal(&queuev1.SendJob{
		MessageId: id.String(), AccountId: accountID, ProviderId: prov.ID, ProviderKind: prov.Kind,
		Message: v.Message, AcceptedAt: timestamppb.New(now),
		Scheduled: st == msgstatus.Scheduled, ProviderBound: look.providerBound(v),
	})
	if err != nil {
		return nil, fmt.Errorf("encode job: %w", err)
	}
	m := &store.NewMessage{
		ID: id.String(), AccountID: accountID, ProviderID: prov.ID, ProviderKind: prov.Kind, Status: st,
		FromAddress: v.Message.GetFrom().GetAddress(), FromName: v.Message.GetFrom().GetName(),
		Subject: v.Message.GetSubject(), Tags: v.Message.GetTags(),
		Recipients: make([]store.Recipient, len(v.Recipients)),
		Content:    content, SendAt: v.SendAt, NATSSubject: queue.SendSubject(prov.Kind, accountID),
		Traceparent: traceparent, IdempotencyKey: req.GetIdempotencyKey(), CreatedAt: now,
	}
	for i, r := range v.Recipients {
		m.Recipients[i] = store.Recipient{Kind: r.Kind, Address: r.Address, Name: r.Name}
	}
	if m.IdempotencyKey != "" {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("hash request: %w", err)
		}
		h := sha256.Sum256(b)
		m.RequestHash = h[:]
	}
	return m, nil
}

// render is req with its template rendered into its message.
func (s *Server) render(ctx context.Context, accountID string, req *emailsenderv1.SendEmailRequest) (*emailsenderv1.SendEmailRequest, error) {
	if s.tpl == nil {
		return nil, validate.FieldStatus(codes.Unimplemented, "template", "templates are not available on this server").Err()
	}
	m, err := s.tpl.RenderMessage(ctx, accountID, req)
	if err != nil {
		return nil, err
	}
	return &emailsenderv1.SendEmailRequest{Message: m, ProviderId: req.GetProviderId(), IdempotencyKey: req.GetIdempotencyKey(), SendAt: req.GetSendAt()}, nil
}

func (s *Server) traceparent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	s.tel.Propagator.Inject(ctx, c)
	return c.Get("traceparent")
}
