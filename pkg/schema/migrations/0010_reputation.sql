-- The reputation guard (services/report/reputation, pkg/accountstate).
--
-- provider_pauses: provider configurations whose sending is paused (the
-- guard's pause threshold was crossed): sends naming them are refused, their
-- queued mail is held until the owner resumes. Mirrored, like account_states,
-- into the EMAIL_ACCOUNT_STATES bucket (key "<account>.<provider>"); version
-- comes from the same sequence.
CREATE TABLE provider_pauses (
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    provider_id uuid NOT NULL REFERENCES provider_configs (id) ON DELETE CASCADE,
    reason      text NOT NULL DEFAULT '',
    actor       text NOT NULL DEFAULT '',
    changed_at  timestamptz NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (account_id, provider_id)
);

-- reputation_counts: recipients sent to, bounced and complained about per
-- account, provider configuration and time bucket (when the report applied
-- the event); the rolling rates are sums over the buckets of the window.
-- Written in the report's apply transaction, hence without foreign keys (a
-- provider configuration deleted meanwhile must not fail a batch); deleting
-- the account's data removes its rows (account_id column); the guard removes
-- buckets older than the window.
CREATE TABLE reputation_counts (
    account_id  uuid NOT NULL,
    provider_id uuid NOT NULL,
    bucket      timestamptz NOT NULL,
    sends       bigint NOT NULL DEFAULT 0,
    bounces     bigint NOT NULL DEFAULT 0,
    complaints  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, provider_id, bucket)
);
CREATE INDEX reputation_counts_bucket ON reputation_counts (bucket);

-- reputation: the level each account's provider configuration was last
-- assessed at (ok, warning, paused) and the counts then; a change of level
-- is a crossing, announced with an event. Resuming sets it back to ok and
-- removes the pair's counts: the window starts afresh.
CREATE TABLE reputation (
    account_id     uuid NOT NULL,
    provider_id    uuid NOT NULL,
    level          text NOT NULL CHECK (level IN ('ok', 'warning', 'paused')),
    sends          bigint NOT NULL DEFAULT 0,
    bounces        bigint NOT NULL DEFAULT 0,
    complaints     bigint NOT NULL DEFAULT 0,
    changed_at     timestamptz NOT NULL,
    assessed_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, provider_id)
);
