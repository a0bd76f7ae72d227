// Package e2e tests the whole system as its users see it: a real gRPC client
// against ingest and report, a real PostgreSQL (a schema per test), a real
// nats-server with JetStream (in-process, restartable), real workers (in-process,
// or as a separate process that the test kills) and a real SMTP server over TCP
// (pkg/smtpsink) whose received bytes are checked.
package e2e
