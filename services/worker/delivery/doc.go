// Package delivery runs one attempt of one send job: it claims the attempt
// (attempt records), decides whether and what to send, calls the provider,
// turns the outcome into events and settles the job, the one JetStream
// settlement a delivery ends in (settleJob).
//
// # Failover
//
// A provider configuration may name a fallback (provider_configs.
// fallback_provider_id, set with PutProvider). A job moves there when its
// configuration is unhealthy (its credentials were refused) before anything is
// sent, or after WORKER_FAILOVER_AFTER transient failures on it: the worker
// records the move in the attempt record (state "moved"), publishes the job on
// send.<fallback kind>.<account> with provider_id = the fallback,
// failed_over_from = the primary and attempts_before = the attempts made
// (Nats-Msg-Id "<message id>:failover:<fallback id>"), publishes a FAILOVER
// event (status RETRYING, detail "moved from provider X (kind; reason) to
// fallback Y (kind)"), and acks the original job. Attempt numbers count on
// from the primary's, so every attempt of a message has its own number and
// events; WORKER_MAX_ATTEMPTS bounds the attempts on each configuration (the
// fallback gets a full budget; WORKER_MAX_AGE still bounds the whole). A job
// that already is a fallback's never fails over again, nor does a message
// whose fallback is unhealthy or gone. Attempt records carry the
// configuration of the job that wrote them: the primary's job delivered again
// after the move re-publishes the fallback job (deduplicated) or, once the
// fallback's job began, is acked as stale, so it never sends again. The
// report moves the message's provider_id and provider_kind to the fallback on
// the FAILOVER event: GetMessage names the provider that sent it.
package delivery
