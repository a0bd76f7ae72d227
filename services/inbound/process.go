package inbound

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/lifecycle"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/verp"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
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
	msg, err := s.store.message(ctx, tok.MessageID)
	if errors.Is(err, errNotFound) {
		// Deleted with its account, or never stored (an address made for
		// a message that was not accepted): nothing to record.
		s.log.InfoContext(ctx, "drop report about an unknown message", "message_id", tok.MessageID, "kind", kind)
		return kind, "unknown_message", nil
	}
	if err != nil {
		return kind, "error", err
	}
	log := s.log.With("message_id", msg.id, "account_id", msg.accountID, "kind", kind, "report_id", rep.ID[:16])

	at := s.deps.Now()
	type item struct {
		addr string
		rc   mailreport.Recipient
	}
	var (
		items []item
		seen  = map[string]bool{}
	)
	for _, rc := range rep.Recipients {
		if rc.Class == "" || rc.Class.Event() == "" {
			continue // delivered, relayed, not-spam...
		}
		for _, addr := range recipientsOf(tok, msg, rc, rep) {
			if !seen[addr] {
				seen[addr] = true
				items = append(items, item{addr, rc})
			}
		}
	}
	if len(items) == 0 {
		log.InfoContext(ctx, "drop report naming no failed recipient of the message")
		return kind, "ignored", nil
	}
	marks := make([]suppression.Mark, len(items))
	for i, it := range items {
		marks[i] = suppression.Mark{Address: it.addr, Type: it.rc.Class.Event(), Class: it.rc.Class}
	}
	// Suppress before publishing: when publishing fails the sender retries,
	// and the rule counts a report once.
	suppressed, err := s.rules.Apply(ctx, msg.accountID, msg.id, marks, at)
	if err != nil {
		return kind, "error", err
	}
	events := make([]*queuev1.DeliveryEvent, len(items))
	for i, it := range items {
		typ := it.rc.Class.Event()
		status := lifecycle.Bounced
		if typ == queue.EventComplained {
			status = lifecycle.Complained
		}
		response := it.rc.Diagnostic
		if response == "" {
			response = strings.TrimSpace(it.rc.Action + " " + it.rc.Status)
		}
		events[i] = &queuev1.DeliveryEvent{
			EventId:          queue.EventID(msg.id, 0, typ, it.addr+"|inbound|"+rep.ID),
			MessageId:        msg.id,
			AccountId:        msg.accountID,
			ProviderId:       msg.providerID,
			Type:             typ,
			Status:           status,
			OccurredAt:       timestamppb.New(at),
			Attempt:          msg.attempts,
			Recipients:       []string{it.addr},
			ProviderResponse: response,
			ErrorClass:       string(it.rc.Class),
			Detail:           detail(rep, it.rc, suppressed[it.addr]),
		}
	}
	if err := s.pub.publish(ctx, events); err != nil {
		return kind, "error", err
	}
	log.InfoContext(ctx, "report recorded", "events", len(events), "suppressed", len(suppressed))
	return kind, "applied", nil
}

// detail is a recipient's detail: the class, what the report said, and
// whether the address is suppressed now.
func detail(rep mailreport.Report, rc mailreport.Recipient, suppressed string) string {
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
	verdict := rc.Class.Verdict()
	if suppressed != "" {
		verdict = "address suppressed"
		if rc.Class == bounce.Soft {
			verdict = "address suppressed after repeated soft bounces"
		}
	}
	return fmt.Sprintf("%s (%s, by mail): %s", rc.Class.Describe(), what, verdict)
}

// recipientsOf are the message's recipients a report's entry is about. An
// address bound to the one recipient of its envelope decides alone: the
// report can be about no one else, whatever address it names (an alias,
// a forward). Otherwise the entry must name one of the message's
// recipients (its Original-Recipient or Final-Recipient), or, for a plain
// bounce that names none, the text must.
func recipientsOf(tok verp.Token, msg message, rc mailreport.Recipient, rep mailreport.Report) []string {
	if tok.Bound() {
		for _, r := range msg.recipients {
			if tok.For(r) {
				return []string{r}
			}
		}
		return nil
	}
	is := map[string]bool{}
	for _, r := range msg.recipients {
		is[r] = true
	}
	for _, a := range []string{rc.Original, rc.Final} {
		if c := canonical(a); c != "" && is[c] {
			return []string{c}
		}
	}
	if rc.Final == "" && rc.Original == "" && rep.Kind == mailreport.PlainBounce {
		var out []string
		text := strings.ToLower(rep.Text)
		for _, r := range msg.recipients {
			if strings.Contains(text, "<"+r+">") || strings.Contains(text, " "+r) {
				out = append(out, r)
			}
		}
		return out
	}
	return nil
}

// canonical is the key an address is stored by (pkg/address), or the
// address lower-cased when it does not parse; a display name is dropped.
func canonical(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
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
