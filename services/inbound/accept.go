package inbound

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/namirasoft/email-sender/pkg/queue"
)

// The headers of an accepted mail on EMAIL_INBOUND; its data is the mail
// (its first ParseBytes).
const (
	// headerRcpt is a verified bounce address of the transaction, once per
	// RCPT TO; the consumer verifies it again (the stream is no boundary).
	headerRcpt = "Inbound-Rcpt"
	// headerReceived is when the 250 was sent (RFC 3339): the events'
	// time, the same when the mail is recorded again.
	headerReceived = "Inbound-Received"
	// headerRemote is the sending server's address, for the logs.
	headerRemote = "Inbound-Remote"
)

// headerRoom is what an accepted mail's headers may take on top of its data.
const headerRoom = 16 << 10

// accepted is one SMTP transaction's mail as it waits on EMAIL_INBOUND.
type accepted struct {
	rcpts  []string
	raw    []byte
	at     time.Time
	remote string
}

// msg is a's message; its Nats-Msg-Id is the digest of the recipients and
// the mail, so a sending server that retries a transaction it saw no 250
// for stores nothing twice.
func (a accepted) msg() *nats.Msg {
	h := sha256.New()
	for _, r := range a.rcpts {
		h.Write([]byte(r))
		h.Write([]byte{'\n'})
	}
	h.Write([]byte{'\n'})
	h.Write(a.raw)
	m := queue.NewMsg(queue.InboundSubject, "inbound-"+hex.EncodeToString(h.Sum(nil)), a.raw)
	for _, r := range a.rcpts {
		m.Header.Add(headerRcpt, r)
	}
	m.Header.Set(headerReceived, a.at.UTC().Format(time.RFC3339Nano))
	m.Header.Set(headerRemote, a.remote)
	return m
}

// errUndecodable: a message on EMAIL_INBOUND that is not an accepted mail.
var errUndecodable = errors.New("not an accepted mail")

// decodeAccepted reads an accepted mail back.
func decodeAccepted(m jetstream.Msg) (accepted, error) {
	h := m.Headers()
	a := accepted{rcpts: h.Values(headerRcpt), raw: m.Data(), remote: h.Get(headerRemote)}
	if len(a.rcpts) == 0 {
		return a, fmt.Errorf("%w: no %s header", errUndecodable, headerRcpt)
	}
	at, err := time.Parse(time.RFC3339Nano, h.Get(headerReceived))
	if err != nil {
		return a, fmt.Errorf("%w: %s: %v", errUndecodable, headerReceived, err)
	}
	a.at = at
	return a, nil
}

// accept makes the mail of an SMTP transaction to the verified bounce
// addresses rcpts durable: one publish on EMAIL_INBOUND, awaited. Once it
// returns nil the sender may be told 250: the consumer records the mail
// (consume), again after a crash. An error means nothing was stored (or
// the answer was lost; the sender's retry is then a duplicate JetStream
// drops).
func (s *Service) accept(ctx context.Context, rcpts []string, raw []byte, remote string) error {
	ctx, span := s.tracer.Start(ctx, "inbound.accept", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.Int("inbound.recipients", len(rcpts)), attribute.Int("inbound.bytes", len(raw))))
	defer span.End()
	m := accepted{rcpts: rcpts, raw: raw, at: s.deps.Now(), remote: remote}.msg()
	s.deps.Telemetry.InjectNATS(ctx, m.Header)
	err := queue.PublishAll(ctx, s.deps.JetStream, []*nats.Msg{m}, s.cfg.ProcessTimeout, jetstream.WithExpectStream(queue.InboundStream))[0]
	s.metrics.accepted(ctx, err == nil)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "not stored")
		return fmt.Errorf("store accepted mail: %w", err)
	}
	return nil
}
