// Package report is the report service: it consumes delivery events from the
// EMAIL_EVENTS stream into PostgreSQL (the event timeline, per-recipient status
// and the message's summary status) and answers the ReportService gRPC API
// (GetMessage, ListMessages, GetStats) for the calling account. Its HTTP
// listener also serves the web console under /console/ (package console).
//
// # Consuming events
//
// A durable pull consumer fetches events in batches; each batch is applied in
// one transaction and then acknowledged, which is what makes the consumer fast.
// Applying is idempotent and order-insensitive:
//
//   - an event is stored with ON CONFLICT (id) DO NOTHING, and an event that was
//     already stored changes nothing else;
//   - a recipient takes an event's status only when msgstatus.Key(status,
//     attempt) is greater than its current status_key, so a redelivered or late
//     event never moves a recipient backwards;
//   - the message's status is msgstatus.Summarise of its recipients' statuses.
//
// An event for an unknown message (the account was deleted, say) is
// acknowledged and dropped; a malformed one is terminated. Neither blocks the
// consumer. When a whole batch fails, its events are retried one by one so that
// a single event the database rejects cannot hold the others back.
//
// The tables applying reads by key are kept from planning as if they were
// empty: every REPORT_ANALYZE_INTERVAL the report analyzes those whose
// planner statistics count less than half their rows, where autovacuum does
// not (pkg/pgstats). The reputation guard assesses a provider
// configuration's deliveries at most once per REPORT_REPUTATION_ASSESS_INTERVAL,
// a hard bounce or complaint with its batch.
//
// # Composition
//
// New takes its dependencies (pool, JetStream, telemetry, logger,
// authenticator), so one process may run ingest, worker and report together:
// either call Run, which serves gRPC on its own listener and consumes, or call
// Register on a shared gRPC server (with MethodScopes merged into the shared
// auth.Interceptor) and run Consume.
package report
