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
// The packages under it each hold one part:
//
//   - schedule takes a kind's jobs from JetStream, fairly between accounts
//     (per-account durable consumers, round-robin, a share of the pool each);
//   - delivery runs one attempt of one job, from its claim to the job's one
//     settlement (ack, nak with a delay, term), including failover to a
//     fallback configuration;
//   - attempt keeps the attempt records (EMAIL_ATTEMPTS: claims, leases,
//     fencing, outcomes);
//   - timeline collects, encodes and publishes a delivery's events;
//   - store is the worker's PostgreSQL (provider configurations, cancellations);
//   - sendjob decodes a send job and works out its envelope;
//   - ratelimit paces sends per account and per provider configuration.
//
// This package only loads the Config and wires them together (New, Run).
package worker
