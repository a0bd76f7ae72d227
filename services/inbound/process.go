package inbound

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/bouncereport"
	"github.com/namirasoft/email-sender/pkg/verp"
	"github.com/namirasoft/email-sender/services/inbound/mailreport"
)

// Handle records one mail that came to the verified bounce address tok: a
// DSN's failed recipients become BOUNCED events, an ARF complaint
// COMPLAINED, each with its pkg/bounce class, and the suppression rule is
// applied before the events are published. Anything else is dropped. An
// error means nothing may have been recorded and the sender should retry.
func (s *Service) Handle(ctx context.Context, tok verp.Token, raw []byte) error {
	ctx, span := s.tracer.Start(ctx, "inbound.report")
	defer span.End()
	kind, outcome, err := s.handle(ctx, tok, raw)
	span.SetAttributes(attribute.String("message.id", tok.MessageID), attribute.String("report.kind", kind), attribute.String("outcome", outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, outcome)
	}
	s.metrics.report(ctx, kind, outcome)
	return err
}

func (s *Service) handle(ctx context.Context, tok verp.Token, raw []byte) (kind, outcome string, err error) {
	rep, err := mailreport.Parse(raw)
	if err != nil {
		s.log.InfoContext(ctx, "drop unreadable mail to a bounce address", "message_id", tok.MessageID, "error", err)
		return "malformed", "ignored", nil
	}
	kind = string(rep.Kind)
	switch rep.Kind {
	case mailreport.AutoReply, mailreport.Other:
		s.log.DebugContext(ctx, "drop mail that is no report", "message_id", tok.MessageID, "kind", kind)
		return kind, "ignored", nil
	}
	msg, err := s.store.Message(ctx, tok.MessageID)
	if errors.Is(err, bouncereport.ErrNotFound) {
		// Deleted with its account, or never stored (an address made for
		// a message that was not accepted): nothing to record.
		s.log.InfoContext(ctx, "drop report about an unknown message", "message_id", tok.MessageID, "kind", kind)
		return kind, "unknown_message", nil
	}
	if err != nil {
		return kind, "error", err
	}
	log := s.log.With("message_id", msg.ID, "account_id", msg.AccountID, "kind", kind, "report_id", rep.ID[:16])

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
	res, err := s.recorder.Record(ctx, msg, report, s.deps.Now())
	if err != nil {
		return kind, "error", err
	}
	if res.Events == 0 {
		log.InfoContext(ctx, "drop report naming no failed recipient of the message")
		return kind, "ignored", nil
	}
	log.InfoContext(ctx, "report recorded", "events", res.Events, "suppressed", len(res.Suppressed))
	return kind, "applied", nil
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
// address bound to the one recipient of its envelope decides alone: the
// report can be about no one else, whatever address it names (an alias,
// a forward). Otherwise the entry must name one of the message's
// recipients (its Original-Recipient or Final-Recipient), or, for a plain
// bounce that names none, the text must.
func recipientsOf(tok verp.Token, msg bouncereport.Message, rc mailreport.Recipient, rep mailreport.Report) []string {
	if tok.Bound() {
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
