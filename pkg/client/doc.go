// Package client is the Go client of Namirasoft Email Sender.
//
// A Client wraps the four gRPC services of the public API (SendService and
// AccountService on ingest, ReportService and WebhookService on report) and
// adds what every caller would otherwise write by hand:
//
//   - authentication: an API key (WithAPIKey) or a TokenSource (JWTs) sent as
//     "authorization: Bearer <token>" on every call;
//   - transport: TLS by default (WithTLS for a custom config), WithInsecure for
//     plaintext development servers, WithKeepalive;
//   - deadlines: the caller's context, or WithDefaultTimeout when it has none;
//   - retries with exponential backoff and jitter (WithRetry) on UNAVAILABLE and
//     DEADLINE_EXCEEDED for calls that are safe to repeat, and on
//     RESOURCE_EXHAUSTED answers that carry a RetryInfo delay (rate limits);
//   - idempotency: Send and SendBatch set a random idempotency_key on every
//     request that has none, once per logical send, and reuse it on each retry,
//     so a retry after a lost answer (a crashed ingest replica, a dropped
//     connection) returns the first answer instead of sending twice. Such an
//     answer has idempotent_replay set and is a success.
//   - Watch: the account's events (ReportService.WatchEvents) as an iterator
//     that reopens a broken stream by itself from the last cursor, with no gap
//     and no duplicate; OUT_OF_RANGE (an expired cursor) and the other answers
//     a retry would not change end it.
//   - SendAndWait: send, then wait until the message reaches a terminal status
//     (SENT or later), following the message's events on WatchEvents.
//
// The requests and responses are the generated types of
// github.com/namirasoft/email-sender/proto/emailsender/v1. Errors are gRPC
// status errors, wrapped with the method name: status.Code(err) and
// status.FromError(err) see through the wrapping.
//
// This module depends on the proto module and gRPC only; importing it pulls in
// no server code.
package client
