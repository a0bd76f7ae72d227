package report

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// FuzzCursor decodes arbitrary page tokens: a bad one is an INVALID_ARGUMENT
// naming page_token, never a panic; a good one names a message id that encodes
// to a token decoding to the same id; and every id round-trips.
func FuzzCursor(f *testing.F) {
	id := uuid.MustParse("01a217e2-79aa-7801-8bb3-cde6d072edcc")
	f.Add(encodeCursor(id.String()), id[:])
	f.Add("", []byte{})
	f.Add("AQ", []byte{1})
	f.Add(encodeCursor(id.String())+"\n", make([]byte, 16))
	f.Add("Ag"+encodeCursor(id.String())[2:], []byte("0123456789abcdef"))
	f.Fuzz(func(t *testing.T, tok string, raw []byte) {
		got, err := decodeCursor(tok)
		if err != nil {
			if !strings.Contains(err.Error(), "page_token") {
				t.Fatalf("decode %q: error does not name page_token: %v", tok, err)
			}
		} else {
			if u, perr := uuid.Parse(got); perr != nil || u.String() != got {
				t.Fatalf("decode %q: %q is not a canonical id", tok, got)
			}
			again, err := decodeCursor(encodeCursor(got))
			if err != nil || again != got {
				t.Fatalf("decode %q: %q re-encodes to a token that decodes to %q (%v)", tok, got, again, err)
			}
		}
		if len(raw) >= 16 {
			u, _ := uuid.FromBytes(raw[:16])
			back, err := decodeCursor(encodeCursor(u.String()))
			if err != nil || back != u.String() {
				t.Fatalf("id %s does not round-trip: %q, %v", u, back, err)
			}
		}
	})
}

// fuzzMsg is the part of a JetStream message decodeEvent reads.
type fuzzMsg struct {
	jetstream.Msg
	data    []byte
	subject string
}

var fuzzPublished = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func (m fuzzMsg) Data() []byte         { return m.data }
func (m fuzzMsg) Subject() string      { return m.subject }
func (m fuzzMsg) Headers() nats.Header { return nats.Header{} }
func (m fuzzMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Timestamp: fuzzPublished}, nil
}

// FuzzDecodeEvent decodes arbitrary bytes and subjects as the report consumer
// does with the events stream: a bad event is errMalformed (terminated), never
// a panic; a decoded one is storable (canonical ids matching the subject, a
// known status, no NUL, valid UTF-8, bounded text) and decoding is stable: the
// decoded event, encoded again, decodes to itself.
func FuzzDecodeEvent(f *testing.F) {
	for _, ev := range sampleEvents() {
		b, err := proto.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "events."+ev.GetAccountId()+"."+ev.GetMessageId())
	}
	f.Add([]byte{}, "events.a.b")
	f.Add([]byte("\x0a\x03abc"), "")
	f.Fuzz(func(t *testing.T, data []byte, subject string) {
		e, err := decodeEvent(fuzzMsg{data: data, subject: subject})
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error is not errMalformed: %v", err)
			}
			return
		}
		for _, id := range []string{e.id, e.messageID, e.accountID} {
			if u, err := uuid.Parse(id); err != nil || u.String() != id {
				t.Fatalf("id %q is not canonical", id)
			}
		}
		if parts := strings.Split(subject, "."); len(parts) == 3 && (parts[1] != e.accountID || parts[2] != e.messageID) {
			t.Fatalf("subject %q accepted for account %s message %s", subject, e.accountID, e.messageID)
		}
		if _, ok := emailsenderv1.MessageStatus_Value_name[int32(e.status)]; !ok || e.attempt < 0 || e.typ == "" {
			t.Fatalf("status %d, attempt %d or type %q accepted", e.status, e.attempt, e.typ)
		}
		for _, c := range []struct {
			s   string
			max int
		}{{e.typ, 64}, {e.providerResponse, maxText}, {e.providerMessageID, 998}, {e.errorClass, 64}, {e.detail, maxText}} {
			if len(c.s) > c.max || strings.ContainsRune(c.s, 0) || !utf8.ValidString(c.s) {
				t.Fatalf("text %q: over %d bytes, NUL or invalid UTF-8", c.s, c.max)
			}
		}
		for _, r := range e.recipients {
			if r == "" || len(r) > 320 || strings.ContainsRune(r, 0) || !utf8.ValidString(r) || r != strings.ToLower(r) {
				t.Fatalf("recipient %q: empty, over 320 bytes, NUL, invalid UTF-8 or not lower-case", r)
			}
		}
		if e.occurredAt.IsZero() {
			t.Fatal("no occurred_at")
		}

		pb := &queuev1.DeliveryEvent{
			EventId: e.id, MessageId: e.messageID, AccountId: e.accountID, Type: e.typ, Status: e.status,
			Attempt: e.attempt, OccurredAt: timestamppb.New(e.occurredAt), Recipients: e.recipients,
			ProviderResponse: e.providerResponse, ProviderMessageId: e.providerMessageID,
			ErrorClass: e.errorClass, Detail: e.detail,
		}
		if e.retryAt != nil {
			pb.RetryAt = timestamppb.New(*e.retryAt)
		}
		b, err := proto.Marshal(pb)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := decodeEvent(fuzzMsg{data: b, subject: subject})
		if err != nil {
			t.Fatalf("decoded event does not decode again: %v", err)
		}
		if !equalEvents(e, again) {
			t.Fatalf("decoding is not stable:\n%+v\n%+v", e, again)
		}
	})
}

func equalEvents(a, b event) bool {
	if (a.retryAt == nil) != (b.retryAt == nil) || (a.retryAt != nil && !a.retryAt.Equal(*b.retryAt)) {
		return false
	}
	if !a.occurredAt.Equal(b.occurredAt) || len(a.recipients) != len(b.recipients) {
		return false
	}
	for i := range a.recipients {
		if a.recipients[i] != b.recipients[i] {
			return false
		}
	}
	a.retryAt, b.retryAt, a.occurredAt, b.occurredAt, a.recipients, b.recipients = nil, nil, time.Time{}, time.Time{}, nil, nil
	return reflect.DeepEqual(a, b)
}

func sampleEvents() []*queuev1.DeliveryEvent {
	const (
		acct = "01a217e2-79aa-7801-8bb3-cde6d072edcd"
		msg  = "01a217e2-79aa-7801-8bb3-cde6d072edcc"
	)
	at := timestamppb.New(fuzzPublished)
	return []*queuev1.DeliveryEvent{
		{EventId: "01a217e2-79aa-7801-8bb3-cde6d072ed01", MessageId: msg, AccountId: acct, Type: "SENT",
			Status: emailsenderv1.MessageStatus_SENT, Attempt: 1, OccurredAt: at,
			ProviderResponse: "250 2.0.0 Ok: queued as 4F1C2", ProviderMessageId: "4F1C2"},
		{EventId: "01a217e2-79aa-7801-8bb3-cde6d072ed02", MessageId: msg, AccountId: acct, Type: "RETRYING",
			Status: emailsenderv1.MessageStatus_RETRYING, Attempt: 2, OccurredAt: at, RetryAt: timestamppb.New(fuzzPublished.Add(time.Minute)),
			ErrorClass: "transient", Detail: "451 4.3.0 try later", Recipients: []string{"Jane@Example.com", " bob@example.com "}},
		{EventId: "01a217e2-79aa-7801-8bb3-cde6d072ed03", MessageId: msg, AccountId: acct, Type: "BOUNCED",
			Status: emailsenderv1.MessageStatus_BOUNCED, Recipients: []string{"bounce@example.com"}, Detail: "nul\x00byte"},
		// Lower-casing Ⱥ (2 bytes) gives ⱥ (3 bytes): the length bound must hold after it.
		{EventId: "01a217e2-79aa-7801-8bb3-cde6d072ed04", MessageId: msg, AccountId: acct, Type: "DELIVERED",
			Status: emailsenderv1.MessageStatus_DELIVERED, Recipients: []string{strings.Repeat("Ⱥ", 160) + "@example.com"}},
	}
}
