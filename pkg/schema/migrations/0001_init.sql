-- Accounts, API keys and provider configurations.
CREATE TABLE accounts (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL,
    default_provider_id uuid,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       text NOT NULL DEFAULT '',
    -- The visible part of the key, e.g. "es_3kq9x2ab", for identification in lists and logs.
    prefix     text NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored.
    hash       bytea NOT NULL UNIQUE,
    scopes     text[] NOT NULL DEFAULT '{send,read}',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE provider_configs (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('smtp', 'ses', 'gmail', 'sandbox')),
    -- Non-secret settings (host, port, TLS mode, user, pool size, ...).
    settings    jsonb NOT NULL DEFAULT '{}',
    -- Secret settings (passwords, keys), sealed by pkg/secretbox (AES-256-GCM envelope
    -- with a key id). NULL when the provider needs none.
    secret      bytea,
    healthy     boolean NOT NULL DEFAULT true,
    health_note text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
);

-- Messages. Hot tables carry account_id but no foreign keys: every query is scoped by
-- account_id explicitly and DeleteAccountData removes rows table by table.
CREATE TABLE messages (
    id                  uuid PRIMARY KEY, -- UUIDv7: time-sortable
    account_id          uuid NOT NULL,
    provider_id         uuid NOT NULL,
    provider_kind       text NOT NULL,
    status              smallint NOT NULL,
    from_address        text NOT NULL,
    from_name           text NOT NULL DEFAULT '',
    subject             text NOT NULL DEFAULT '',
    tags                jsonb NOT NULL DEFAULT '{}',
    recipient_count     integer NOT NULL,
    size_bytes          integer NOT NULL,
    -- The encoded SendJob (bodies and attachments). Purged after the retention period.
    content             bytea,
    send_at             timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    provider_message_id text NOT NULL DEFAULT '',
    last_error          text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX messages_account_id ON messages (account_id, id DESC);
CREATE INDEX messages_account_status ON messages (account_id, status, id DESC);
CREATE INDEX messages_account_created ON messages (account_id, created_at);
CREATE INDEX messages_tags ON messages USING gin (tags jsonb_path_ops);

CREATE TABLE recipients (
    message_id uuid NOT NULL,
    idx        smallint NOT NULL,
    account_id uuid NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('to', 'cc', 'bcc')),
    address    text NOT NULL, -- lower-cased
    name       text NOT NULL DEFAULT '',
    status     smallint NOT NULL,
    -- Ordering key of the current status (see report's status rules): an event only
    -- applies when its key is greater, so redelivered or late events change nothing.
    status_key bigint NOT NULL DEFAULT 0,
    detail     text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX recipients_account_address ON recipients (account_id, address);

CREATE TABLE events (
    id                uuid PRIMARY KEY,
    message_id        uuid NOT NULL,
    account_id        uuid NOT NULL,
    type              text NOT NULL,
    status            smallint NOT NULL,
    occurred_at       timestamptz NOT NULL,
    attempt           integer NOT NULL DEFAULT 0,
    recipients        text[] NOT NULL DEFAULT '{}',
    provider_response text NOT NULL DEFAULT '',
    error_class       text NOT NULL DEFAULT '',
    detail            text NOT NULL DEFAULT '',
    retry_at          timestamptz
);
CREATE INDEX events_message ON events (message_id, occurred_at);
CREATE INDEX events_account ON events (account_id);

-- Transactional outbox: a row per accepted message not yet on JetStream. Written in
-- the same transaction as the message; deleted once JetStream acknowledged it.
CREATE TABLE outbox (
    message_id  uuid PRIMARY KEY,
    account_id  uuid NOT NULL,
    subject     text NOT NULL,
    not_before  timestamptz NOT NULL,
    -- W3C traceparent of the accepting call, so the relay's publish joins its trace.
    traceparent text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (not_before);
CREATE INDEX outbox_account ON outbox (account_id);

CREATE TABLE idempotency_keys (
    account_id   uuid NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    message_id   uuid NOT NULL,
    status       smallint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
