-- Account management: API key use, provider configuration additions, verified
-- senders, suppressions, the audit of account deletions, and the index the
-- retention janitor scans.

ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

ALTER TABLE provider_configs
    -- Optional failover target in the same account (used by the workers).
    ADD COLUMN fallback_provider_id uuid,
    -- Names of the secret fields that are set (e.g. {password}), so lists can
    -- say so without opening the secret.
    ADD COLUMN secret_fields text[] NOT NULL DEFAULT '{}',
    -- Last VerifyProvider result: {"ok": bool, "detail": text, "ses": {...}}.
    ADD COLUMN last_verify jsonb,
    ADD COLUMN verified_at timestamptz;

-- Sender addresses (or, for SES providers, whole domains) an account may send
-- from. A pending sender holds only a SHA-256 hash of its mailed code.
CREATE TABLE senders (
    id              uuid PRIMARY KEY,
    account_id      uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- Lower-cased canonical address, or lower-cased ASCII domain when is_domain.
    address         text NOT NULL,
    is_domain       boolean NOT NULL DEFAULT false,
    status          text NOT NULL CHECK (status IN ('pending', 'verified')),
    -- code, ses_identity or bootstrap.
    method          text NOT NULL DEFAULT '',
    provider_id     uuid,
    code_hash       bytea,
    code_expires_at timestamptz,
    code_attempts   integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    verified_at     timestamptz,
    UNIQUE (account_id, address)
);

-- Addresses nothing is sent to, per account. Looked up for every accepted
-- message by (account_id, address).
CREATE TABLE suppressions (
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address    text NOT NULL, -- lower-cased canonical address
    reason     text NOT NULL CHECK (reason IN ('manual', 'bounce', 'complaint')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, address)
);

-- One row per DeleteAccountData. Deliberately without an account_id column (so
-- the deletion, which removes every row of every table with one, leaves it) and
-- without personal data: the account is named by the SHA-256 of its id, which
-- confirms "was account X deleted?" for whoever knows X and tells nothing else.
CREATE TABLE account_deletions (
    id                     uuid PRIMARY KEY,
    account_hash           text NOT NULL,
    started_at             timestamptz NOT NULL,
    completed_at           timestamptz,
    rows_deleted           jsonb NOT NULL DEFAULT '{}',
    stream_messages_purged jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX account_deletions_hash ON account_deletions (account_hash);

-- The retention janitor looks for old messages that still have content.
CREATE INDEX messages_content_created ON messages (created_at) WHERE content IS NOT NULL;
