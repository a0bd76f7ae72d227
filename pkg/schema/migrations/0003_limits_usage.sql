-- Per-account limits, the shared counters that enforce them across replicas,
-- and the API usage records.

-- Per-account overrides of the configured defaults (RATE_LIMIT_DEFAULT,
-- DAILY_QUOTA_DEFAULT); NULL keeps the default, 0 means unlimited. Set with
-- `ingest admin set-limits`.
CREATE TABLE account_limits (
    account_id      uuid PRIMARY KEY,
    rate_per_second integer CHECK (rate_per_second >= 0),
    daily_quota     integer CHECK (daily_quota >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The request-rate counter: one row per account for the current one-second
-- window (PostgreSQL's clock, so replicas with skewed clocks agree). Replicas
-- take tokens from it in chunks. UNLOGGED: a crash or failover resets the
-- current second's count, which costs at most one window of accuracy.
CREATE UNLOGGED TABLE rate_windows (
    account_id   uuid PRIMARY KEY,
    window_start timestamptz NOT NULL,
    used         integer NOT NULL,
    -- Tokens granted by the last UPDATE (what the caller got).
    last_grant   integer NOT NULL DEFAULT 0
);

-- The daily send quota counter: messages accepted per account per UTC day.
CREATE TABLE daily_quota_usage (
    account_id uuid NOT NULL,
    day        date NOT NULL,
    used       integer NOT NULL,
    last_grant integer NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day)
);

-- One row per API call (never the message content). account_id is always the
-- caller's own account: ListUsage filters by it in SQL.
CREATE TABLE usage_records (
    id            uuid NOT NULL, -- UUIDv7
    account_id    uuid NOT NULL,
    at            timestamptz NOT NULL,
    method        text NOT NULL,
    -- The API key id, or the token's subject for Namirasoft Account tokens.
    key_id        text NOT NULL DEFAULT '',
    token_subject text NOT NULL DEFAULT '',
    client_ip     text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT '',
    result        text NOT NULL,
    duration_ms   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, at, id)
);
CREATE INDEX usage_records_at ON usage_records (at);
