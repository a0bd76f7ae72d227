// Package schedule takes the send jobs of one provider kind from JetStream
// and hands them to deliveries, fairly between accounts.
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
package schedule
