// Package worker delivers send jobs from JetStream through the account's
// provider (smtp, ses, gmail, sandbox) and publishes a delivery event for every
// step.
//
// Each provider kind named in WORKER_PROVIDERS has its own scheduler with its
// own pool of deliveries (WORKER_<KIND>_CONCURRENCY, else WORKER_CONCURRENCY)
// and its own provider rate: kinds never share slots, so a slow or failing
// provider never delays another, and `WORKER_PROVIDERS=ses worker` scales SES
// alone. For each job the worker
//
//  1. records the attempt as started in the EMAIL_ATTEMPTS key-value bucket
//     before calling the provider, so a redelivery after a crash knows that an
//     earlier attempt was interrupted and says so in the timeline;
//  2. sends, keeping the job alive with in-progress acks while the provider works;
//  3. records the outcome and its events in the bucket, publishes the events, and
//     only then acks (Sent, Permanent), naks with an exponential, jittered delay
//     (Transient), or terminates (attempts exhausted).
//
// A job whose outcome is already recorded (a duplicate publish or a redelivery
// after the events were published but before the ack) is not sent again: its
// recorded events are re-published (JetStream deduplicates them) and it is acked.
// This keeps deliveries at most once per message except in the window between
// the provider accepting a message and the worker recording that.
//
// Ambiguous outcomes (the message data was sent but the provider's answer was
// lost) follow Config.AmbiguousPolicy: "fail" (default) fails the message with
// error class "ambiguous" and never risks a duplicate; "retry" retries it like a
// transient failure and may deliver twice.
//
// # Fair share between accounts
//
// Jobs are on EMAIL_SEND under send.<kind>.<account>. One consumer per kind
// would deliver them in stream order, so an account's burst of 100k jobs
// would hold back another account's single message until the burst is sent.
// Instead every account has its own durable pull consumer per kind
// ("worker-<kind>-<account>", filter send.<kind>.<account>; filters that do
// not overlap, as the work-queue stream requires), and a kind's scheduler
// pulls from them round-robin:
//
//   - It knows which accounts have jobs from the stream's per-subject counts
//     (stream info with subject filter send.<kind>.*, every
//     WORKER_DISCOVERY_INTERVAL) and, at once, from the headers-only copy the
//     stream republishes of every stored job (notice.send.<kind>.<account>).
//   - It takes jobs only for free slots (FetchNoWait, never more than it can
//     start: nothing waits in the worker while its ack wait runs), visiting
//     the accounts with jobs in turn. While n accounts have jobs waiting, none
//     may hold more than ceil(concurrency/n) slots; an account alone uses the
//     whole pool, and an account that arrives gets the next free slot, however
//     many jobs the others queued. (Slots rather than bytes are the unit: a
//     slot is what a slow provider call occupies.)
//   - A consumer is created when an account first has jobs and removed by the
//     server once nobody pulled from it for WORKER_ACCOUNT_IDLE
//     (InactiveThreshold), so thousands of accounts cost consumers only while
//     they send. Replicas of the worker share the same per-account consumers;
//     each applies the shares to its own slots.
//   - Retries (NakWithDelay), in-progress acks, attempt records and the
//     graceful drain work per job as before; a consumer removed while a job of
//     it waits for its retry leaves the job on the stream for the next one.
//
// Workers of earlier versions used one consumer per kind ("worker-<kind>",
// filter send.<kind>.>); it overlaps the per-account ones, so it is deleted at
// start (and again if an old worker recreated it during a rolling upgrade).
// Its name survives as the consumer label of the emailsender_consumer_*
// gauges, which sum the kind's per-account consumers.
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
package worker
