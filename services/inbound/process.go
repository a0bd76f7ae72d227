package inbound

import (
	"context"
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

// Outcomes of recording a mail.
const (
	// OutcomeApplied: events were published (and the rule applied).
	OutcomeApplied = "applied"
	// OutcomeIgnored: no report, or one naming no failed recipient of the
	// message; nothing recorded.
	OutcomeIgnored = "ignored"
	// OutcomeUnknownMessage: the message is not stored (or not of the
	// account the mail was limited to); nothing recorded.
	OutcomeUnknownMessage = "unknown_message"
	// OutcomeError: nothing may have been recorded; it is tried again
	// (INBOUND_RETRY_DELAY; the IMAP poller at its next poll).
	OutcomeError = "error"
	// OutcomeRejected: accepted mail given up on, logged as an error: it
	// does not decode, or the database refuses its data (no retry could
	// store it).
	OutcomeRejected = "rejected"
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

// IMAPRecorder is what the IMAP poller records the mail of bounce
// mailboxes with: Record, recorded when events were published.
func (s *Service) IMAPRecorder() imappoll.Recorder {
	return imappoll.RecorderFunc(func(ctx context.Context, f imappoll.Found) (bool, error) {
		out, err := s.Record(ctx, Mail{Token: f.Token, MessageID: f.MessageID, AccountID: f.AccountID, Raw: f.Raw})
		return out == OutcomeApplied, err
	})
}

// Record records one mail about a message now, as the consumer of
// EMAIL_INBOUND records the mail the MX accepted (recordAll): a DSN's
// failed recipients become BOUNCED events, an ARF complaint COMPLAINED,
// each with its pkg/bounce class, and the suppression rule is applied
// before the events are published (pkg/bouncereport). Anything else is
// dropped. The IMAP poller records with it: its mailbox keeps the mail
// until Record returns. An error means nothing may have been recorded and
// the caller should retry; the outcome is one of the Outcome constants.
func (s *Service) Record(ctx context.Context, m Mail) (string, error) {
	ctx, span := s.tracer.Start(ctx, "inbound.report")
	defer span.End()
	req := s.parse(ctx, m, s.deps.Now())
	if req.outcome == "" {
		s.recordAll(ctx, []*request{req})
	}
	span.SetAttributes(attribute.String("message.id", m.messageID()), attribute.String("report.kind", req.kind), attribute.String("outcome", req.outcome))
	if req.err != nil {
		span.RecordError(req.err)
		span.SetStatus(codes.Error, req.outcome)
	}
	s.metrics.report(ctx, req.kind, req.outcome)
	return req.outcome, req.err
}

// request is one mail about one message on its way through recordAll.
type request struct {
	ctx  context.Context
	mail Mail
	rep  mailreport.Report
	at   time.Time
	kind string
	// outcome and err are the result; an outcome set by parse means there
	// is nothing to record.
	outcome string
	err     error
}

func (r *request) finish(outcome string, err error) { r.outcome, r.err = outcome, err }

// parse reads m, which arrived at at, into a request; a mail that is no
// report (unreadable, an auto-reply, a person's answer) is finished
// already (OutcomeIgnored).
func (s *Service) parse(ctx context.Context, m Mail, at time.Time) *request {
	req := &request{ctx: ctx, mail: m, at: at}
	rep, err := mailreport.Parse(m.Raw)
	if err != nil {
		s.log.InfoContext(ctx, "drop unreadable mail to a bounce address", "message_id", m.messageID(), "error", err)
		req.kind = "malformed"
		req.finish(OutcomeIgnored, nil)
		return req
	}
	req.rep, req.kind = rep, string(rep.Kind)
	switch rep.Kind {
	case mailreport.AutoReply, mailreport.Other:
		s.log.DebugContext(ctx, "drop mail that is no report", "message_id", m.messageID(), "kind", req.kind)
		req.finish(OutcomeIgnored, nil)
		return req
	}
	// A delay notice (RFC 3464 Action: delayed) says the reporting MTA is
	// still trying: the recipient's fate is not known yet, and BOUNCED is
	// final, so it is logged and not recorded (as the Gmail bounce poller
	// skips Gmail's Delay notices). A later failure notice is recorded.
	kept := rep.Recipients[:0:0]
	for _, rc := range rep.Recipients {
		if rc.Action != "delayed" {
			kept = append(kept, rc)
		}
	}
	if len(kept) == 0 && len(rep.Recipients) > 0 {
		s.log.InfoContext(ctx, "delay notice not recorded: still being tried", "message_id", m.messageID())
		req.kind = "delayed"
		req.finish(OutcomeIgnored, nil)
		return req
	}
	req.rep.Recipients = kept
	return req
}

// recordAll records reqs through pkg/bouncereport and finishes each: one
// query finds their messages (Store.Messages), and Recorder.RecordAll
// applies the suppression rule to all of them in one round trip and
// publishes their events together.
func (s *Service) recordAll(ctx context.Context, reqs []*request) {
	ctx, span := s.tracer.Start(ctx, "inbound.record_batch", trace.WithAttributes(attribute.Int("batch.size", len(reqs))))
	defer span.End()
	ids := make([]string, 0, len(reqs))
	for _, r := range reqs {
		span.AddLink(trace.LinkFromContext(r.ctx))
		ids = append(ids, r.mail.messageID())
	}
	msgs, err := s.store.Messages(ctx, ids)
	if err != nil {
		span.RecordError(err)
		for _, r := range reqs {
			r.finish(OutcomeError, err)
		}
		return
	}

	var (
		todo    []*request
		logs    []*slog.Logger
		entries []bouncereport.Entry
	)
	for _, r := range reqs {
		id := r.mail.messageID()
		msg, ok := msgs[id]
		if !ok || (r.mail.AccountID != "" && msg.AccountID != r.mail.AccountID) {
			// Deleted with its account, never stored (an address made for a
			// message that was not accepted), or another account's.
			s.log.InfoContext(r.ctx, "drop report about an unknown message", "message_id", id, "kind", r.kind)
			r.finish(OutcomeUnknownMessage, nil)
			continue
		}
		log := s.log.With("message_id", msg.ID, "account_id", msg.AccountID, "kind", r.kind, "report_id", r.rep.ID[:16])
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
