// Package queue names the JetStream streams, subjects and headers the services
// exchange work on, and creates the streams.
//
// Send jobs:  stream EMAIL_SEND,   subject send.<provider_kind>.<account_id>,
//
//	work-queue retention, Nats-Msg-Id = message id.
//
// Events:     stream EMAIL_EVENTS, subject events.<account_id>.<message_id>,
//
//	Nats-Msg-Id = event id.
//
// Notices:    every job stored on EMAIL_SEND is republished by the stream,
//
//	headers only, on notice.send.<provider_kind>.<account_id>, so workers
//	learn at once that an account has work (see services/worker).
//
// Inbound:    stream EMAIL_INBOUND, subject inbound.reports, work-queue
//
//	retention: the mail the inbound service's MX accepted (a DSN, an ARF
//	report) waiting to be recorded, Nats-Msg-Id = a digest of the
//	transaction (see services/inbound). Bounded in bytes, and full means
//	new publishes are refused (the MX answers 451), never that accepted
//	mail is dropped.
//
// Send jobs and events carry the account in the subject so an account's
// pending work can be purged by subject filter; the inbound service learns
// the account only when it records a report (a report about a deleted
// account's message is dropped then).
package queue

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/invalidate"
)

const (
	SendStream  = "EMAIL_SEND"
	EventStream = "EMAIL_EVENTS"
	// InboundStream holds the mail the inbound MX accepted until it is
	// recorded (InboundSubject).
	InboundStream = "EMAIL_INBOUND"
	// InboundSubject is the one subject of InboundStream.
	InboundSubject = inboundPrefix + "reports"
	// AttemptsBucket is the key-value bucket of the workers' attempt records,
	// keyed by message id (DeleteAccountData purges an account's).
	AttemptsBucket = "EMAIL_ATTEMPTS"
	// AccountStatesBucket mirrors the account_states table (suspended,
	// terminated, deleted accounts), keyed by account id; workers, report and
	// ingest watch it (pkg/accountstate).
	AccountStatesBucket = "EMAIL_ACCOUNT_STATES"
	// AccountConfigBucket announces, keyed by account id, that an account's
	// verified senders or provider configurations changed: every ingest
	// replica's send cache forgets the account (AccountConfigFeed).
	AccountConfigBucket = "EMAIL_ACCOUNT_CONFIG"

	sendPrefix    = "send."
	eventPrefix   = "events."
	noticePrefix  = "notice."
	inboundPrefix = "inbound."
)

// Event types, as stored in the timeline.
const (
	EventAccepted    = "ACCEPTED"
	EventScheduled   = "SCHEDULED"
	EventStarted     = "ATTEMPT_STARTED"
	EventInterrupted = "ATTEMPT_INTERRUPTED"
	EventSent        = "SENT"
	EventRetry       = "RETRY_SCHEDULED"
	EventFailed      = "FAILED"
	EventDelivered   = "DELIVERED"
	EventBounced     = "BOUNCED"
	EventComplained  = "COMPLAINED"
	EventCanceled    = "CANCELED"
	EventSuppressed  = "SUPPRESSED"
	// EventFailover: the message moved to its provider configuration's
	// fallback (status RETRYING; provider_id names the fallback).
	EventFailover = "FAILOVER"
	// EventWebhookDisabled: an account's webhook endpoint was disabled (the
	// detail says why). Account-level: its subject and message_id carry the
	// endpoint id, and webhook_id is set.
	EventWebhookDisabled = "WEBHOOK_DISABLED"
	// Reputation guard events (pkg/reputation), about one provider
	// configuration of an account: its bounce or complaint rate crossed the
	// warn threshold (WARNING) or the pause threshold (PAUSED: sends refused,
	// queued mail held), fell back below the warn threshold (RECOVERED), or
	// the owner resumed it (RESUMED). Account-level: their subject and
	// message_id carry the provider configuration id, and provider_id is set.
	EventReputationWarning   = "REPUTATION_WARNING"
	EventReputationPaused    = "REPUTATION_PAUSED"
	EventReputationRecovered = "REPUTATION_RECOVERED"
	EventReputationResumed   = "REPUTATION_RESUMED"
)

// ProviderEvent reports whether events of type typ are about a provider
// configuration rather than a message (the reputation guard's).
func ProviderEvent(typ string) bool { return strings.HasPrefix(typ, "REPUTATION_") }

// SendSubject is the subject of a send job.
func SendSubject(providerKind, accountID string) string {
	return sendPrefix + providerKind + "." + accountID
}

// SendFilter matches every send job of one provider kind.
func SendFilter(providerKind string) string { return sendPrefix + providerKind + ".>" }

// SendKindAccounts matches the subjects of one provider kind, one per account
// (for stream info's per-subject counts).
func SendKindAccounts(providerKind string) string { return sendPrefix + providerKind + ".*" }

// SendNoticeFilter matches the headers-only notices of new send jobs of one
// provider kind: notice.send.<provider_kind>.<account_id>.
func SendNoticeFilter(providerKind string) string {
	return noticePrefix + sendPrefix + providerKind + ".*"
}

// SubjectAccount returns the last token of a send or notice subject: the account.
func SubjectAccount(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[i+1:]
	}
	return subject
}

// ParkedSubject is where the jobs of a paused provider configuration wait
// (pkg/reputation, services/worker): send.<provider_id>.<account_id>. No
// scheduler takes them (their second token is no provider kind); the worker
// moves them back to send.<kind>.<account_id> once the pause is lifted. An
// account's parked jobs match SendAccountFilter like its other jobs.
func ParkedSubject(providerID, accountID string) string {
	return sendPrefix + providerID + "." + accountID
}

// SendAccountsFilter matches every job subject, one per (kind or parked
// provider configuration, account), for stream info's per-subject counts.
const SendAccountsFilter = sendPrefix + "*.*"

// SendAccountFilter matches every send job of one account.
func SendAccountFilter(accountID string) string { return sendPrefix + "*." + accountID }

// EventSubject is the subject of a delivery event.
func EventSubject(accountID, messageID string) string {
	return eventPrefix + accountID + "." + messageID
}

// EventAccountFilter matches every event of one account.
func EventAccountFilter(accountID string) string { return eventPrefix + accountID + ".>" }

// EventFilter matches every event.
const EventFilter = eventPrefix + ">"

var eventNamespace = uuid.MustParse("6f1c1f5e-6b1e-4d53-9a53-2d1f0f7f6a10")

// EventID is the deterministic id of the event of type typ for a message's
// attempt (and recipient, for per-recipient events), so that an event published
// twice is deduplicated by JetStream and by the report's primary key.
func EventID(messageID string, attempt int, typ, recipient string) string {
	return uuid.NewSHA1(eventNamespace, []byte(fmt.Sprintf("%s|%d|%s|%s", messageID, attempt, typ, recipient))).String()
}

// StreamConfig sizes the streams. Its default tags are the one source of the
// defaults; NATS_STREAM_REPLICAS sets Replicas in every service.
type StreamConfig struct {
	// Replicas is the stream replication factor (1 single node, 3 in a cluster).
	Replicas int `default:"1"`
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Id values. The
	// outbox relay's redelivery of an already-published message within this window
	// is dropped by JetStream.
	DuplicateWindow time.Duration `default:"2h"`
	// MaxMsgSize bounds one job (encoded message with attachments).
	MaxMsgSize int32 `default:"16777216"`
	// EventMaxAge is how long delivery events are kept after being consumed.
	EventMaxAge time.Duration `default:"168h"`
	// InboundMaxBytes bounds EMAIL_INBOUND. Mail is kept until recorded
	// (no age limit); when the bound is reached the MX answers 451 and the
	// sending servers retry later.
	InboundMaxBytes int64 `default:"1073741824"`
	Storage         jetstream.StorageType
}

// WithDefaults fills unset fields from the default tags.
func (c StreamConfig) WithDefaults() StreamConfig {
	// The names are this type's own fields (TestStreamConfigDefaults).
	_ = envconfig.FillDefaults(&c, "Replicas", "DuplicateWindow", "MaxMsgSize", "EventMaxAge", "InboundMaxBytes")
	return c
}

// EnsureStreams creates or updates the send, event and inbound streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	for _, sc := range streamConfigs(cfg) {
		if err := ensureStream(ctx, js, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

func streamConfigs(cfg StreamConfig) []jetstream.StreamConfig {
	cfg = cfg.WithDefaults()
	return []jetstream.StreamConfig{{
		Name:        SendStream,
		Description: "email send jobs, one subject per provider kind and account",
		Subjects:    []string{sendPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		MaxMsgSize:  cfg.MaxMsgSize,
		Discard:     jetstream.DiscardOld,
		// A headers-only copy of every stored job, on notice.send.<kind>.<account>:
		// workers wake up for an account's first job instead of waiting for
		// their next poll. Nothing stores the notices.
		RePublish: &jetstream.RePublish{Source: sendPrefix + ">", Destination: noticePrefix + sendPrefix + ">", HeadersOnly: true},
	}, {
		Name:        EventStream,
		Description: "email delivery events",
		Subjects:    []string{eventPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		MaxAge:      cfg.EventMaxAge,
	}, {
		Name:        InboundStream,
		Description: "mail accepted by the inbound MX, waiting to be recorded",
		Subjects:    []string{inboundPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
		// A sending server that retries a transaction whose 250 it did not
		// see publishes the same Nats-Msg-Id: stored once.
		Duplicates: cfg.DuplicateWindow,
		MaxMsgSize: cfg.MaxMsgSize,
		MaxBytes:   cfg.InboundMaxBytes,
		// Full: refuse new mail (451, retried by the sender) rather than
		// drop mail already answered 250.
		Discard: jetstream.DiscardNew,
	}}
}

// ensureStream creates the stream, or updates it only when its configuration
// differs: every service ensures the streams at start, and an update that
// changes nothing is still work for the server (and, in nats-server 2.15,
// races with consumers being created at the same moment).
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err = js.CreateStream(ctx, want); err == nil || !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
		s, err = js.Stream(ctx, want.Name)
	}
	if err != nil {
		return err
	}
	if sameStreamConfig(s.CachedInfo().Config, want) {
		return nil
	}
	_, err = js.UpdateStream(ctx, want)
	return err
}

// sameStreamConfig compares the fields EnsureStreams sets.
func sameStreamConfig(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description &&
		slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention &&
		have.Storage == want.Storage &&
		have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates &&
		unlimited(have.MaxMsgSize) == unlimited(want.MaxMsgSize) &&
		unlimited(have.MaxBytes) == unlimited(want.MaxBytes) &&
		have.Discard == want.Discard &&
		have.MaxAge == want.MaxAge &&
		reflect.DeepEqual(have.RePublish, want.RePublish)
}

// unlimited maps the two spellings of "no limit" (0 when unset, -1 as the
// server reports it) to one.
func unlimited[T int32 | int64](n T) T {
	if n <= 0 {
		return -1
	}
	return n
}

// AccountConfigFeed is the feed of AccountConfigBucket (pkg/invalidate):
// ingest announces sender and provider configuration changes on it and
// watches it, the worker posts the configurations it marks unhealthy;
// replicas sizes the bucket.
func AccountConfigFeed(js jetstream.JetStream, replicas int) *invalidate.Feed {
	return invalidate.New(js, invalidate.Config{
		Bucket:      AccountConfigBucket,
		Prefix:      "sendcache-",
		Description: "account configuration changes (senders, provider configurations); every ingest replica's send cache forgets the account",
		Replicas:    replicas,
	})
}
