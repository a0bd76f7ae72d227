// Package ingest is the front door of Namirasoft Email Sender: the gRPC
// SendService that validates messages, stores them in PostgreSQL with a
// transactional outbox and puts their jobs on the JetStream send stream
// (subject send.<provider_kind>.<account_id>, Nats-Msg-Id = message id).
//
// An OK answer means the message is durable: the message, its recipients and
// its outbox row are committed in one transaction (shared by concurrent calls:
// group commit, see send) before the call publishes the job and its ACCEPTED
// event. When the publish fails (NATS down) the call still
// answers OK and the outbox relay, which runs in every replica, publishes the
// job once NATS is back; JetStream's duplicate window drops a job published by
// both. Scheduled messages (send_at in the future) are published only by the
// relay, when due, and can be canceled until then.
//
// Ingest also owns retention: every RETENTION_INTERVAL its pkg/partition
// Manager makes the time partitions of messages, contents, recipients,
// events, usage records and idempotency keys ahead and drops the expired
// ones (one replica at a time).
//
// Service wires it together: New builds it from a Config (environment
// variables, see Config) and its clients, Run serves until its context ends and
// shuts down gracefully. Bootstrap creates an account with a provider
// configuration and an API key, for `ingest admin bootstrap`, the all-in-one
// dev runner and tests.
//
// Subpackages: validate (request rules and limits), store (SQL), outbox
// (publishing, batched outbox deletes, the relay), send (the gRPC service, its
// group commit and its cache of senders and provider configurations).
package ingest
