package inbound

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/bouncereport"
	"github.com/namirasoft/email-sender/pkg/mailreport"
	"github.com/namirasoft/email-sender/pkg/verp"
	"github.com/namirasoft/email-sender/services/inbound/imappoll"
)

// Outcomes of Record.
const (
	// OutcomeApplied: events were published (and the rule applied).
	OutcomeApplied = "applied"
	// OutcomeIgnored: no report, or one naming no failed recipient of the
	// message; nothing recorded.
	OutcomeIgnored = "ignored"
	// OutcomeUnknownMessage: the message is not stored (or not of the
	// account the mail was limited to); nothing recorded.
	OutcomeUnknownMessage = "unknown_message"
	// OutcomeError: nothing may have been recorded; try again later.
	OutcomeError = "error"
)

// Mail is one received mail about one of the service's messages.
type Mail struct {
	// Token is the verified bounce address the mail came to. Nil when the
	// message was found otherwise (the IMAP poller's match of the returned
	// original's Message-ID): then MessageID names it and the report counts
	// only for the recipients of the message it names.
	Token *verp.Token
	// MessageID is the message when Token is nil.
	MessageID string
	// AccountID, when set, is the account the message must belong to; a
	// message of another account is an unknown message.
	AccountID string
	// Raw is the mail (its start, INBOUND_PARSE_BYTES).
	Raw []byte
}

func (m Mail) messageID() string {
	if m.Token != nil {
		return m.Token.MessageID
	}
	return m.MessageID
}

// Handle records one mail that came over SMTP to the verified bounce
// address tok (Record). At an account's bounce domain, the message must be
// that account's (the owner the address was verified for): one that is not
// is an unknown message.
func (s *Service) Handle(ctx context.Context, tok verp.Token, raw []byte) error {
	_, err := s.Record(ctx, Mail{Token: &tok, AccountID: tok.AccountID, Raw: raw})
	return err
}

// IMAPRecorder is what the IMAP poller records the mail of bounce
// mailboxes with: Record, recorded when events were published.
func (s *Service) IMAPRecorder() imappoll.Recorder {
	return imappoll.RecorderFunc(func(ctx context.Context, f imappoll.Found) (bool, error) {
		out, err := s.Record(ctx, Mail{Token: f.Token, MessageID: f.MessageID, AccountID: f.AccountID, Raw: f.Raw})
		return out == OutcomeApplied, err
	})
}

// Record records one mail about a message, whichever way it came (SMTP to
// its bounce address, the IMAP poller): a DSN's failed recipients become
// BOUNCED events, an ARF complaint COMPLAINED, each with its pkg/bounce
// class, and the suppression rule is applied before the events are
// published (pkg/bouncereport). Anything else is dropped. Concurrent mails
// are recorded together (batches, bouncereport.Recorder.RecordAll), and
// Record returns once the mail's events are stored on the stream. An error
// means nothing may have been recorded and the sender should retry; the
// outcome is one of the Outcome constants.
func (s *Service) Record(ctx context.Context, m Mail) (string, error) {
	ctx, span := s.tracer.Start(ctx, "inbound.report")
	defer span.End()
	kind, outcome, err := s.record(ctx, m)
	span.SetAttributes(attribute.String("message.id", m.messageID()), attribute.String("report.kind", kind), attribute.String("outcome", outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, outcome)
	}
	s.metrics.report(ctx, kind, outcome)
	return outcome, err
}

func (s *Service) record(ctx context.Context, m Mail) (kind, outcome string, err error) {
	rep, err := mailreport.Parse(m.Raw)
	if err != nil {
		s.log.InfoContext(ctx, "drop unreadable mail to a bounce address", "message_id", m.messageID(), "error", err)
		return "malformed", OutcomeIgnored, nil
	}
	kind = string(rep.Kind)
	switch rep.Kind {
	case mailreport.AutoReply, mailreport.Other:
		s.log.DebugContext(ctx, "drop mail that is no report", "message_id", m.messageID(), "kind", kind)
		return kind, OutcomeIgnored, nil
	}
	req := &request{ctx: ctx, mail: m, rep: rep, at: s.deps.Now(), done: make(chan result, 1)}
	if !s.batches.submit(ctx, req) {
		// Not running (Run has not started or has ended): a batch of one.
		s.processBatch(ctx, []*request{req})
	}
	select {
	case r := <-req.done:
		return kind, r.outcome, r.err
	case <-ctx.Done():
		return kind, OutcomeError, fmt.Errorf("record report: %w", ctx.Err())
	}
}

// request is one parsed report waiting for its batch.
type request struct {
	ctx  context.Context
	mail Mail
	rep  mailreport.Report
	at   time.Time
	done chan result
}

type result struct {
	outcome string
	err     error
}

func (r *request) finish(outcome string, err error) { r.done <- result{outcome, err} }

// processBatch records reqs through pkg/bouncereport: one query finds their
// messages (Store.Messages), and Recorder.RecordAll applies the suppression
// rule to all of them in one round trip and publishes their events
// together, each request answered when its own are stored.
func (s *Service) processBatch(ctx context.Context, reqs []*request) {
	ctx, span := s.tracer.Start(ctx, "inbound.record_batch", trace.WithAttributes(attribute.Int("batch.size", len(reqs))))
	defer span.End()
	live := reqs[:0:0]
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.finish(OutcomeError, err) // its sender was told to retry already
			continue
		}
		span.AddLink(trace.LinkFromContext(r.ctx))
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ids := make([]string, 0, len(live))
	for _, r := range live {
		ids = append(ids, r.mail.messageID())
	}
	msgs, err := s.store.Messages(ctx, ids)
	if err != nil {
		span.RecordError(err)
		for _, r := range live {
			r.finish(OutcomeError, err)
		}
		return
	}

	var (
		todo    []*request
		logs    []*slog.Logger
		entries []bouncereport.Entry
	)
	for _, r := range live {
		id := r.mail.messageID()
		msg, ok := msgs[id]
		if !ok || (r.mail.AccountID != "" && msg.AccountID != r.mail.AccountID) {
			// Deleted with its account, never stored (an address made for a
			// message that was not accepted), or another account's.
			s.log.InfoContext(r.ctx, "drop report about an unknown message", "message_id", id, "kind", string(r.rep.Kind))
			r.finish(OutcomeUnknownMessage, nil)
			continue
		}
		log := s.log.With("message_id", msg.ID, "account_id", msg.AccountID, "kind", string(r.rep.Kind), "report_id", r.rep.ID[:16])
		report := reportOf(r.mail.Token, msg, r.rep)
		if len(report.Findings) == 0 {
			log.InfoContext(r.ctx, "drop report naming no failed recipient of the message")
			r.finish(OutcomeIgnored, nil)
			continue
		}
		todo = append(todo, r)
		logs = append(logs, log)
		entries = append(entries, bouncereport.Entry{Ctx: r.ctx, Message: msg, Report: report, At: r.at})
	}
	if len(todo) == 0 {
		return
	}
	res, errs := s.recorder.RecordAll(ctx, entries)
	for i, r := range todo {
		switch {
		case errs[i] != nil:
			span.RecordError(errs[i])
			r.finish(OutcomeError, errs[i])
		case res[i].Events == 0:
			logs[i].InfoContext(r.ctx, "drop report naming no failed recipient of the message")
			r.finish(OutcomeIgnored, nil)
		default:
			logs[i].InfoContext(r.ctx, "report recorded", "events", res[i].Events, "suppressed", len(res[i].Suppressed))
			r.finish(OutcomeApplied, nil)
		}
	}
}

// reportOf is what a parsed mail says about msg: one finding per failed
// recipient of the message it names (recipientsOf).
func reportOf(tok *verp.Token, msg bouncereport.Message, rep mailreport.Report) bouncereport.Report {
	report := bouncereport.Report{ID: rep.ID, Source: "inbound", Via: "by mail"}
	for _, rc := range rep.Recipients {
		if rc.Class == "" || rc.Class.Event() == "" {
			continue // delivered, relayed, not-spam...
		}
		response := rc.Diagnostic
		if response == "" {
			response = strings.TrimSpace(rc.Action + " " + rc.Status)
		}
		for _, addr := range recipientsOf(tok, msg, rc, rep) {
			report.Findings = append(report.Findings, bouncereport.Finding{
				Address: addr, Class: rc.Class, Response: response, What: what(rep, rc),
			})
		}
	}
	return report
}

// what is what a report says of a recipient, for its detail.
func what(rep mailreport.Report, rc mailreport.Recipient) string {
	what := rc.Status
	switch rep.Kind {
	case mailreport.ARF:
		what = "ARF " + rc.Action
	case mailreport.PlainBounce:
		what = bounce.ParseCode(rc.Diagnostic).String()
	}
	if what == "" {
		what = string(rep.Kind)
	}
	return what
}

// recipientsOf are the message's recipients a report's entry is about. An
// address (tok; nil when the message was found by its Message-ID) bound to
// the one recipient of its envelope decides alone: the report can be about
// no one else, whatever address it names (an alias, a forward). Otherwise
// the entry must name one of the message's recipients (its
// Original-Recipient or Final-Recipient), or, for a plain bounce that names
// none, the text must.
func recipientsOf(tok *verp.Token, msg bouncereport.Message, rc mailreport.Recipient, rep mailreport.Report) []string {
	if tok != nil && tok.Bound() {
		for _, r := range msg.Recipients {
			if tok.For(r) {
				return []string{r}
			}
		}
		return nil
	}
	is := map[string]bool{}
	for _, r := range msg.Recipients {
		is[r] = true
	}
	for _, a := range []string{rc.Original, rc.Final} {
		if c := bouncereport.Canonical(a); c != "" && is[c] {
			return []string{c}
		}
	}
	if rc.Final == "" && rc.Original == "" && rep.Kind == mailreport.PlainBounce {
		var out []string
		text := strings.ToLower(rep.Text)
		for _, r := range msg.Recipients {
			if strings.Contains(text, "<"+r+">") || strings.Contains(text, " "+r) {
				out = append(out, r)
			}
		}
		return out
	}
	return nil
}
