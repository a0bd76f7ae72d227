package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/suppression"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/report/sns"
)

// FeedbackPathPrefix is where SNS posts the SES events of one SES provider
// configuration: FeedbackPathPrefix + provider id.
const FeedbackPathPrefix = "/v1/feedback/ses/"

const (
	// maxSNSBody bounds an SNS post: SNS messages are at most 256 KiB, plus
	// the envelope and JSON escaping.
	maxSNSBody = 768 << 10
	// unknownRetryWindow: a notification naming no message of the account is
	// answered 503 (SNS retries it) while the mail is younger than this, since
	// the SENT event that stores the SES message id may still be on its way
	// to the report; after it, 200 and dropped.
	unknownRetryWindow = 10 * time.Minute
	// clockSkew is how far ahead of the report's clock an SNS Timestamp or
	// SES mail.timestamp may be (and how much later than the SNS Timestamp
	// the mail.timestamp).
	clockSkew = 15 * time.Minute
)

// feedbackKind is the provider kind whose reports SNS posts to the endpoint
// (SES event publishing); its registry entry's parser reads them.
const feedbackKind = ses.Kind

// feedback turns SES events delivered by SNS into delivery events on the
// events stream (applied by the consumer like the workers' events) and
// suppressions.
type feedback struct {
	svc      *Service
	verifier *sns.Verifier
	now      func() time.Time
	// rules decide which reports suppress an address (pkg/suppression).
	rules *suppression.Rules
}

// register adds the endpoint to the HTTP gateway's mux (an httpgateway.Register).
func (f *feedback) register(_ context.Context, mux *runtime.ServeMux, _ *grpc.ClientConn) error {
	return mux.HandlePath(http.MethodPost, FeedbackPathPrefix+"{provider_id}", f.serveHTTP)
}

// feedbackResult is the answer to one SNS post.
type feedbackResult struct {
	code    int
	outcome string // metric label
	text    string
	err     error // logged
}

func (f *feedback) serveHTTP(w http.ResponseWriter, r *http.Request, params map[string]string) {
	s := f.svc
	ctx, span := s.tracer.Start(r.Context(), "report.feedback", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("provider.id", params["provider_id"])))
	defer span.End()
	res := f.handle(ctx, span, params["provider_id"], r.Body)
	s.metrics.feedbackHandled(ctx, res.outcome)
	span.SetAttributes(attribute.String("outcome", res.outcome), attribute.Int("http.response.status_code", res.code))
	if res.err != nil {
		span.RecordError(res.err)
		if res.code >= 500 {
			span.SetStatus(codes.Error, res.outcome)
			s.log.ErrorContext(ctx, "ses feedback", "provider_id", params["provider_id"], "error", res.err)
		} else {
			s.log.WarnContext(ctx, "ses feedback refused", "provider_id", params["provider_id"], "status", res.code, "error", res.err)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(res.code)
	_, _ = io.WriteString(w, res.text+"\n")
}

// handle verifies an SNS post and acts on it. Nothing changes unless the
// message is signed by SNS, recent, for an existing SES provider
// configuration, from one of the SNS topics that configuration is bound to
// (feedback_topic_arns; an unbound configuration accepts none) and allowed by
// the operator's REPORT_SNS_TOPIC_ARNS when set.
func (f *feedback) handle(ctx context.Context, span trace.Span, providerID string, body io.Reader) feedbackResult {
	raw, err := io.ReadAll(io.LimitReader(body, maxSNSBody+1))
	if err != nil {
		return feedbackResult{http.StatusBadRequest, "rejected", "unreadable body", err}
	}
	if len(raw) > maxSNSBody {
		return feedbackResult{http.StatusRequestEntityTooLarge, "rejected", "body too large", nil}
	}
	m, err := sns.Parse(raw)
	if err != nil {
		return feedbackResult{http.StatusForbidden, "rejected", "not a valid SNS message", err}
	}
	if err := f.verifier.Verify(ctx, m); err != nil {
		if errors.Is(err, sns.ErrInvalid) {
			return feedbackResult{http.StatusForbidden, "rejected", "signature verification failed", err}
		}
		return feedbackResult{http.StatusServiceUnavailable, "error", "cannot verify now", err}
	}
	// Only what Amazon signed goes on the span: before the signature is
	// checked, these fields are whatever the caller wrote.
	span.SetAttributes(attribute.String("sns.message_id", m.MessageID), attribute.String("sns.type", m.Type),
		attribute.String("sns.topic_arn", m.TopicArn))
	if err := f.fresh(parseTime(m.Timestamp), "SNS Timestamp", f.svc.cfg.SNSMaxAge); err != nil {
		return feedbackResult{http.StatusForbidden, "stale", "stale or undated SNS message", err}
	}
	accountID, settings, err := f.svc.store.sesProvider(ctx, providerID)
	if errors.Is(err, errNotFound) {
		return feedbackResult{http.StatusNotFound, "unknown_provider", "no SES provider configuration with this id",
			fmt.Errorf("no ses provider %q (sns topic %s)", providerID, m.TopicArn)}
	}
	if err != nil {
		return feedbackResult{http.StatusServiceUnavailable, "error", "try again", err}
	}
	span.SetAttributes(attribute.String("account.id", accountID))
	log := f.svc.log.With("account_id", accountID, "provider_id", providerID, "topic_arn", m.TopicArn, "sns_message_id", m.MessageID)
	// A signature proves only that SNS sent it: from any topic of any AWS
	// account, whoever knows the provider id could subscribe one. Only the
	// configuration's own topics are accepted (subscriptions included).
	if !settings.FeedbackBound() {
		return feedbackResult{http.StatusForbidden, "unbound", "the SES provider configuration names no aws_account_id and feedback_topic_arns",
			fmt.Errorf("ses provider %s is not bound to an aws account and sns topics (topic %s)", providerID, m.TopicArn)}
	}
	if !settings.FeedbackTopic(m.TopicArn) {
		return feedbackResult{http.StatusForbidden, "unbound", "topic not bound to this SES provider configuration",
			fmt.Errorf("sns topic %s is not one of ses provider %s's feedback_topic_arns", m.TopicArn, providerID)}
	}

	switch m.Type {
	case sns.TypeSubscriptionConfirmation:
		arn, err := f.verifier.Confirm(ctx, m)
		if errors.Is(err, sns.ErrInvalid) {
			return feedbackResult{http.StatusForbidden, "rejected", "subscribe URL refused", err}
		}
		if err != nil {
			return feedbackResult{http.StatusBadGateway, "error", "confirmation failed", err}
		}
		if err := f.svc.store.recordSubscription(ctx, accountID, providerID, m.TopicArn, arn, f.now(), true); err != nil {
			// SNS confirmed it; only the record is missing.
			log.ErrorContext(ctx, "record sns subscription", "error", err)
		}
		log.InfoContext(ctx, "sns subscription confirmed", "subscription_arn", arn)
		return feedbackResult{http.StatusOK, "confirmed", "subscription confirmed", nil}
	case sns.TypeUnsubscribeConfirmation:
		if err := f.svc.store.recordSubscription(ctx, accountID, providerID, m.TopicArn, "", f.now(), false); err != nil {
			return feedbackResult{http.StatusServiceUnavailable, "error", "try again", err}
		}
		log.InfoContext(ctx, "sns subscription ended")
		return feedbackResult{http.StatusOK, "unsubscribed", "unsubscribe recorded", nil}
	}
	return f.notification(ctx, log, accountID, providerID, settings, m)
}

// fresh checks that t (what, set) is at most maxAge old and at most
// clockSkew ahead.
func (f *feedback) fresh(t time.Time, what string, maxAge time.Duration) error {
	now := f.now()
	switch {
	case t.IsZero():
		return fmt.Errorf("no %s", what)
	case t.Before(now.Add(-maxAge)):
		return fmt.Errorf("%s %s is older than %s", what, t.UTC().Format(time.RFC3339), maxAge)
	case t.After(now.Add(clockSkew)):
		return fmt.Errorf("%s %s is in the future", what, t.UTC().Format(time.RFC3339))
	}
	return nil
}

// eventStatus is the recipient status of a feedback event type.
func eventStatus(typ string) (msgstatus.Status, bool) {
	switch typ {
	case queue.EventDelivered:
		return msgstatus.Delivered, true
	case queue.EventBounced:
		return msgstatus.Bounced, true
	case queue.EventComplained:
		return msgstatus.Complained, true
	}
	return 0, false
}

// notification applies an SES event: the recipients it names, of the message
// of the account whose SES message id it names, get their delivery events
// (published on the events stream with ids derived from the SNS message id,
// so a notification delivered twice changes nothing), and hard bounces and
// complaints are suppressed in the account.
func (f *feedback) notification(ctx context.Context, log *slog.Logger, accountID, providerID string, settings ses.Settings, m *sns.Message) feedbackResult {
	k, ok := kinds.Lookup(feedbackKind)
	if !ok || k.Feedback == nil {
		return feedbackResult{http.StatusServiceUnavailable, "error", "no feedback parser", fmt.Errorf("provider kind %s parses no feedback", feedbackKind)}
	}
	n, err := k.Feedback([]byte(m.Message))
	if err != nil {
		log.InfoContext(ctx, "ignore sns notification that is not an ses event", "error", err)
		return feedbackResult{http.StatusOK, "ignored", "not an SES event", nil}
	}
	// A topic of the configuration's account could still carry (or be fed)
	// mail of another AWS account: only mail sent by the bound account counts.
	if n.SenderAccount != settings.AWSAccountID {
		return feedbackResult{http.StatusForbidden, "rejected", "mail.sendingAccountId is not this SES provider configuration's aws_account_id",
			fmt.Errorf("ses event of aws account %q, provider %s is bound to %s", n.SenderAccount, providerID, settings.AWSAccountID)}
	}
	if err := f.fresh(n.SentAt, "mail.timestamp", f.svc.cfg.FeedbackMaxMailAge); err != nil {
		return feedbackResult{http.StatusForbidden, "stale", "stale or undated mail", err}
	}
	if published := parseTime(m.Timestamp); n.SentAt.After(published.Add(clockSkew)) {
		return feedbackResult{http.StatusForbidden, "stale", "mail.timestamp after the SNS Timestamp",
			fmt.Errorf("mail.timestamp %s is after the sns timestamp %s", n.SentAt.UTC().Format(time.RFC3339), m.Timestamp)}
	}
	kind, items := n.Event, n.Recipients
	if len(items) == 0 {
		log.InfoContext(ctx, "ignore ses event", "ses_event", kind)
		return feedbackResult{http.StatusOK, "ignored", "nothing to record for " + kind, nil}
	}
	sesID := n.ProviderMessageID
	if sesID == "" {
		log.InfoContext(ctx, "ignore ses event without mail.messageId", "ses_event", kind)
		return feedbackResult{http.StatusOK, "ignored", "no mail.messageId", nil}
	}
	// Only the provider's own message id, recorded from this configuration's
	// send: never our message id (public, in the Message-ID header) from the
	// message tag.
	msg, err := f.svc.store.feedbackMessage(ctx, accountID, providerID, sesID)
	if errors.Is(err, errNotFound) {
		if f.now().Sub(n.SentAt) < unknownRetryWindow {
			return feedbackResult{http.StatusServiceUnavailable, "unknown_message", "message not known (yet)",
				fmt.Errorf("no message of account %s with ses message id %q; sns will retry", accountID, sesID)}
		}
		log.InfoContext(ctx, "ignore ses event of unknown message", "ses_event", kind, "ses_message_id", sesID)
		return feedbackResult{http.StatusOK, "ignored", "unknown message", nil}
	}
	if err != nil {
		return feedbackResult{http.StatusServiceUnavailable, "error", "try again", err}
	}
	occurred := n.OccurredAt
	if occurred.IsZero() {
		occurred = parseTime(m.Timestamp)
	}
	if occurred.IsZero() {
		occurred = f.now()
	}

	var (
		events  []*queuev1.DeliveryEvent
		marks   []suppression.Mark
		skipped int
	)
	for _, it := range items {
		addr := canonical(it.Recipient)
		status, known := eventStatus(it.Type)
		if !known || !msg.recipients[addr] {
			// Only the message's own recipients: a notification cannot touch
			// (or suppress) any other address of the account.
			skipped++
			continue
		}
		events = append(events, &queuev1.DeliveryEvent{
			EventId:          queue.EventID(msg.id, 0, it.Type, addr+"|"+m.MessageID),
			MessageId:        msg.id,
			AccountId:        accountID,
			ProviderId:       providerID,
			Type:             it.Type,
			Status:           status,
			OccurredAt:       timestamppb.New(occurred),
			Attempt:          msg.attempts,
			Recipients:       []string{addr},
			ProviderResponse: it.Response,
			ErrorClass:       it.Class,
			Detail:           it.Detail,
		})
		marks = append(marks, suppression.Mark{Address: addr, Type: it.Type, Class: bounce.Class(it.Class)})
	}
	if len(events) == 0 {
		log.InfoContext(ctx, "ignore ses event naming none of the message's recipients", "ses_event", kind, "message_id", msg.id)
		return feedbackResult{http.StatusOK, "ignored", "no recipient of the message", nil}
	}
	// Suppress before publishing: when publishing fails SNS retries, and the
	// suppression is already there (the rules count a report once).
	suppressed, err := f.rules.Apply(ctx, accountID, msg.id, marks, occurred)
	if err != nil {
		return feedbackResult{http.StatusServiceUnavailable, "error", "try again", err}
	}
	for _, ev := range events {
		if reason := suppressed[ev.GetRecipients()[0]]; reason != "" && ev.GetErrorClass() == string(bounce.Soft) {
			ev.Detail += "; address suppressed after repeated soft bounces"
		}
	}
	if err := f.publish(ctx, events); err != nil {
		return feedbackResult{http.StatusServiceUnavailable, "error", "try again", err}
	}
	log.InfoContext(ctx, "ses feedback recorded", "ses_event", kind, "message_id", msg.id, "events", len(events),
		"suppressed", len(suppressed), "not_recipients", skipped)
	return feedbackResult{http.StatusOK, "applied", fmt.Sprintf("recorded %d events", len(events)), nil}
}

// publish puts events on the events stream as a worker does (Nats-Msg-Id =
// event id) and waits for JetStream to store each.
func (f *feedback) publish(ctx context.Context, events []*queuev1.DeliveryEvent) error {
	for _, ev := range events {
		data, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		msg := &nats.Msg{Subject: queue.EventSubject(ev.GetAccountId(), ev.GetMessageId()), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, ev.GetEventId())
		f.svc.tel.InjectNATS(ctx, msg.Header)
		if _, err := f.svc.deps.JetStream.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("publish event %s: %w", ev.GetEventId(), err)
		}
	}
	return nil
}

// canonical is the key an address is stored and matched by (pkg/address), or
// the address lower-cased when it does not parse; a display name is dropped.
func canonical(s string) string {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "<>") {
		if a, err := mail.ParseAddress(s); err == nil {
			s = a.Address
		}
	}
	if a, err := address.Parse(s); err == nil {
		return a.Lower()
	}
	return strings.ToLower(s)
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// sesProvider returns the account and settings of the SES provider
// configuration id; errNotFound when there is none (or id is not a UUID).
func (s *store) sesProvider(ctx context.Context, id string) (string, ses.Settings, error) {
	var (
		account  string
		raw      []byte
		settings ses.Settings
	)
	if _, err := uuid.Parse(id); err != nil {
		return "", settings, errNotFound
	}
	err := s.pool.QueryRow(ctx, `SELECT account_id::text, settings FROM provider_configs WHERE id = $1 AND kind = $2`,
		id, feedbackKind).Scan(&account, &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", settings, errNotFound
	}
	if err != nil {
		return "", settings, fmt.Errorf("look up provider %s: %w", id, err)
	}
	if err := json.Unmarshal(raw, &settings); err != nil {
		return "", settings, fmt.Errorf("provider %s settings: %w", id, err)
	}
	return account, settings, nil
}

// feedbackMessage is the message an SES event is about.
type feedbackMessage struct {
	id         string
	attempts   int32
	recipients map[string]bool
}

// feedbackMessage returns the account's message sent through the provider
// configuration providerID whose provider message id (recorded from the
// send's SENT event) is providerMessageID, with its recipients; errNotFound
// when none.
func (s *store) feedbackMessage(ctx context.Context, accountID, providerID, providerMessageID string) (feedbackMessage, error) {
	var (
		m     feedbackMessage
		addrs []string
	)
	err := s.pool.QueryRow(ctx, `
		SELECT m.id::text, m.attempts,
			ARRAY(SELECT r.address FROM recipients r WHERE r.message_id = m.id AND r.account_id = m.account_id)
		FROM messages m
		WHERE m.account_id = $1 AND m.provider_id = $2 AND m.provider_message_id = $3 AND m.provider_message_id <> ''
		ORDER BY m.id DESC LIMIT 1`, accountID, providerID, providerMessageID).Scan(&m.id, &m.attempts, &addrs)
	if errors.Is(err, pgx.ErrNoRows) {
		return feedbackMessage{}, errNotFound
	}
	if err != nil {
		return feedbackMessage{}, fmt.Errorf("look up message by provider message id: %w", err)
	}
	m.recipients = make(map[string]bool, len(addrs))
	for _, a := range addrs {
		m.recipients[a] = true
	}
	return m, nil
}

// recordSubscription notes that SNS topicARN's subscription to the provider's
// feedback endpoint was confirmed (confirmed) or ended.
func (s *store) recordSubscription(ctx context.Context, accountID, providerID, topicARN, subscriptionARN string, at time.Time, confirmed bool) error {
	var err error
	if confirmed {
		_, err = s.pool.Exec(ctx, `
			INSERT INTO feedback_subscriptions (account_id, provider_id, topic_arn, subscription_arn, confirmed_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (provider_id, topic_arn) DO UPDATE
			SET subscription_arn = EXCLUDED.subscription_arn, confirmed_at = EXCLUDED.confirmed_at, unsubscribed_at = NULL`,
			accountID, providerID, topicARN, subscriptionARN, at)
	} else {
		_, err = s.pool.Exec(ctx, `
			INSERT INTO feedback_subscriptions (account_id, provider_id, topic_arn, unsubscribed_at)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (provider_id, topic_arn) DO UPDATE SET unsubscribed_at = EXCLUDED.unsubscribed_at`,
			accountID, providerID, topicARN, at)
	}
	if err != nil {
		return fmt.Errorf("record sns subscription: %w", err)
	}
	return nil
}
