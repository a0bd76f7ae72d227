-- The console's operator sessions (services/report/console, operator.go):
-- an operator signs in with an operator token (OPERATOR_TOKEN_SHA256), not
-- as an account. Apart from console_sessions (which are an account's) so
-- that no operator session can be read as a tenant's and no tenant's as an
-- operator's. token_sha256 is the operator token's SHA-256: the session ends
-- when that token leaves OPERATOR_TOKEN_SHA256. credential is the operator
-- token sealed by pkg/secretbox (MASTER_KEYS) with the session's token hash
-- as associated data, for the actions the console asks ingest's
-- OperatorService to do (suspend, resume); NULL without MASTER_KEYS.
CREATE TABLE console_operator_sessions (
    token_hash   bytea PRIMARY KEY,
    operator     text NOT NULL,
    token_sha256 bytea NOT NULL,
    credential   bytea,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_operator_sessions_expires ON console_operator_sessions (expires_at);

-- The operator view's failovers: the newest FAILOVER events across accounts,
-- without reading the day's other events (a day of the 10-million-message
-- data set is about a million events: 120 ms cold to scan). Partial: only
-- failovers are in it, so applying any other event costs it nothing.
CREATE INDEX events_failover ON events (message_id) WHERE type = 'FAILOVER';

-- Delivery latency (the console's dashboard percentiles): how long after
-- acceptance (or the scheduled time, whichever is later) each SENT and
-- DELIVERED event happened, counted per account, hour of the message's
-- creation (as message_stats), provider configuration, kind and histogram
-- bucket. The report adds to it in the transaction that applies the events
-- for the first time (services/report/latency.go); percentiles of any hour
-- come from at most a few dozen rows, whatever the number of messages.
-- bucket b holds latencies of [2^(b/4) - 1, 2^((b+1)/4) - 1) milliseconds
-- (four buckets per doubling: a percentile is known within 19%).
-- No foreign keys (written with the events, like reputation_counts); its
-- account_id column makes DeleteAccountData remove it.
CREATE TABLE message_latency (
    account_id  uuid NOT NULL,
    hour        timestamptz NOT NULL,
    provider_id uuid NOT NULL,
    -- 1: accepted → SENT, 2: accepted → DELIVERED
    kind        smallint NOT NULL,
    bucket      smallint NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (account_id, hour, provider_id, kind, bucket)
);
-- The report deletes the hours older than REPORT_LATENCY_RETENTION.
CREATE INDEX message_latency_hour ON message_latency (hour);
