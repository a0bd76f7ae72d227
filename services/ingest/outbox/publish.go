// Package outbox moves accepted messages from PostgreSQL onto JetStream without
// losing or doubling one: the accepting call publishes its jobs at once and
// hands the acknowledged ones to a Deleter, which removes their outbox rows in
// batches; the Relay publishes whatever is still in the outbox when it is due
// (scheduled messages, and jobs whose first publish failed). Every publish
// carries Nats-Msg-Id = message id, so JetStream drops a job published twice
// within its duplicate window.
package outbox
