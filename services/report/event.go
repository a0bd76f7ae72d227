package report

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// errMalformed marks an event that can never be applied: it is terminated.
var errMalformed = errors.New("malformed event")

// maxText bounds each free-text field of an event as stored.
const maxText = 8 << 10

// event is a decoded, validated delivery event.
type event struct {
	id, messageID, accountID string
	typ                      string
	status                   msgstatus.Status
	attempt                  int32
	occurredAt               time.Time
	// recipients are lower-cased addresses; empty means all.
	recipients        []string
	providerResponse  string
	providerMessageID string
	errorClass        string
	detail            string
	retryAt           *time.Time
	// movedTo, on a FAILOVER event, is the fallback provider configuration the
	// message moved to: the message's provider from then on.
	movedTo string
}

// key orders the event's status change (msgstatus.Key); negative for events that
// change no status.
func (e event) key() int64 {
	if e.status == emailsenderv1.MessageStatus_VALUE_UNSPECIFIED {
		return -1
	}
	return msgstatus.Key(e.status, int(e.attempt))
}

// recipientDetail is what a recipient keeps as the provider's answer.
func (e event) recipientDetail() string {
	if e.providerResponse != "" {
		return e.providerResponse
	}
	return e.detail
}

// errorText is the message's last_error when the event reports a failure.
func (e event) errorText() string {
	isError := e.errorClass != "" || e.status == msgstatus.Retrying || e.status == msgstatus.Failed || e.status == msgstatus.Bounced
	if !isError {
		return ""
	}
	if e.detail != "" {
		return e.detail
	}
	if e.providerResponse != "" {
		return e.providerResponse
	}
	return e.errorClass
}

// decodeEvent decodes and validates a message of the events stream. Errors
// wrap errMalformed.
func decodeEvent(m jetstream.Msg) (event, error) {
	var pb queuev1.DeliveryEvent
	if err := proto.Unmarshal(m.Data(), &pb); err != nil {
		return event{}, fmt.Errorf("%w: decode: %w", errMalformed, err)
	}
	e := event{
		id:                pb.GetEventId(),
		messageID:         pb.GetMessageId(),
		accountID:         pb.GetAccountId(),
		typ:               clean(pb.GetType(), 64),
		status:            pb.GetStatus(),
		attempt:           pb.GetAttempt(),
		providerResponse:  clean(pb.GetProviderResponse(), maxText),
		providerMessageID: clean(pb.GetProviderMessageId(), 998),
		errorClass:        clean(pb.GetErrorClass(), 64),
		detail:            clean(pb.GetDetail(), maxText),
	}
	for name, v := range map[string]*string{"event_id": &e.id, "message_id": &e.messageID, "account_id": &e.accountID} {
		u, err := uuid.Parse(*v)
		if err != nil {
			return event{}, fmt.Errorf("%w: %s %q: %w", errMalformed, name, *v, err)
		}
		*v = u.String()
	}
	if acct, msg, ok := subjectIDs(m.Subject()); ok && (acct != e.accountID || msg != e.messageID) {
		return event{}, fmt.Errorf("%w: subject %s does not match account %s message %s", errMalformed, m.Subject(), e.accountID, e.messageID)
	}
	if e.typ == "" {
		return event{}, fmt.Errorf("%w: empty type", errMalformed)
	}
	if _, ok := emailsenderv1.MessageStatus_Value_name[int32(e.status)]; !ok {
		return event{}, fmt.Errorf("%w: unknown status %d", errMalformed, e.status)
	}
	if e.attempt < 0 {
		return event{}, fmt.Errorf("%w: negative attempt %d", errMalformed, e.attempt)
	}
	switch ts := pb.GetOccurredAt(); {
	case ts == nil:
		e.occurredAt = publishedAt(m)
	case ts.CheckValid() != nil:
		return event{}, fmt.Errorf("%w: occurred_at: %w", errMalformed, ts.CheckValid())
	default:
		e.occurredAt = ts.AsTime()
	}
	if ts := pb.GetRetryAt(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return event{}, fmt.Errorf("%w: retry_at: %w", errMalformed, err)
		}
		t := ts.AsTime()
		e.retryAt = &t
	}
	if e.typ == queue.EventFailover {
		if u, err := uuid.Parse(pb.GetProviderId()); err == nil {
			e.movedTo = u.String()
		}
	}
	for _, r := range pb.GetRecipients() {
		// Lower-case before bounding: lower-casing can lengthen a string.
		if r = strings.TrimSpace(clean(strings.ToLower(r), 320)); r != "" {
			e.recipients = append(e.recipients, r)
		}
	}
	return e, nil
}

// subjectIDs parses events.<account_id>.<message_id>.
func subjectIDs(subject string) (account, message string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	return parts[1], parts[2], true
}

func publishedAt(m jetstream.Msg) time.Time {
	if md, err := m.Metadata(); err == nil && !md.Timestamp.IsZero() {
		return md.Timestamp
	}
	return time.Now()
}

// clean makes s storable as PostgreSQL text: no NUL bytes (valid UTF-8 is
// guaranteed by protobuf) and at most limit bytes, cut at a rune boundary.
func clean(s string, limit int) string {
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
