-- Time-partitioned tables (pkg/partition is the one home of their layout).
--
-- messages, recipients, events, usage_records and idempotency_keys become
-- tables partitioned by RANGE of a time key, and message content moves out
-- of messages into message_contents, partitioned like messages: retention
-- then drops whole partitions (content after RETENTION_PERIOD, the rest
-- after METADATA_RETENTION, USAGE_RETENTION and 24 hours) instead of
-- updating or deleting rows, and leaves no dead tuples.
--
-- messages, message_contents, recipients and events are partitioned by the
-- message id, a UUIDv7 whose first 48 bits are its creation time in Unix
-- milliseconds: every primary key and lookup by message id stays as it was
-- and touches one partition. A bound is the UUIDv7 of the boundary's
-- millisecond with every other bit zero (partition.IDBound).
-- usage_records is partitioned by at, idempotency_keys by created_at.
--
-- This migration gives each table three partitions that take every key:
--   <table>_history         [MINVALUE, B0)          the rows that exist now
--   <table>_pYYYYMMDD_HHMM  [B0, B0 + 1 day)        the first day's
--   <table>_future          [B0 + 1 day, MAXVALUE)
-- where B0 is the minute this migration runs. Ingest's partition manager
-- (partition.Manager), which runs right after it, makes the periods from
-- B0 + 1 day on, so what ingest stores meanwhile is not in _future and
-- need not be moved; it drops the history partition like any other once
-- all of it has expired.
--
-- Every row is kept: each table is renamed, its rows copied into the new
-- table and the old one dropped, inside the migration's transaction; the
-- time that takes grows with the tables.

CREATE FUNCTION pg_temp.id_bound(t timestamptz) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0') || repeat('0', 20))::uuid
$$;

-- make_partitions creates the three partitions of tbl (keyed by a message
-- id when by_id, else by a timestamptz), named as partition.PeriodName does.
CREATE FUNCTION pg_temp.make_partitions(tbl text, by_id boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    b0 timestamptz := date_trunc('minute', now());
    b1 timestamptz := date_trunc('minute', now()) + interval '1 day';
    lo text := CASE WHEN by_id THEN quote_literal(pg_temp.id_bound(b0)) ELSE quote_literal(b0) END;
    hi text := CASE WHEN by_id THEN quote_literal(pg_temp.id_bound(b1)) ELSE quote_literal(b1) END;
BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (MINVALUE) TO (%s)', tbl || '_history', tbl, lo);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
        tbl || '_p' || to_char(b0 AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI'), tbl, lo, hi);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (MAXVALUE)', tbl || '_future', tbl, hi);
END
$$;

-- messages (without content) and message_contents.
ALTER TABLE messages RENAME TO messages_0011;
ALTER TABLE messages_0011 RENAME CONSTRAINT messages_pkey TO messages_0011_pkey;
DROP INDEX messages_account_id, messages_account_status, messages_account_created, messages_tags,
    messages_content_created, messages_account_provider_message_id;

CREATE TABLE messages (
    id                  uuid NOT NULL, -- UUIDv7 of created_at (partition.NewMessageID)
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
    send_at             timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    provider_message_id text NOT NULL DEFAULT '',
    last_error          text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
SELECT pg_temp.make_partitions('messages', true);
INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, from_name, subject,
        tags, recipient_count, size_bytes, send_at, attempts, provider_message_id, last_error, created_at, updated_at)
    SELECT id, account_id, provider_id, provider_kind, status, from_address, from_name, subject,
        tags, recipient_count, size_bytes, send_at, attempts, provider_message_id, last_error, created_at, updated_at
    FROM messages_0011;

-- The encoded SendJob (bodies and attachments) of a message, until its
-- partition expires (RETENTION_PERIOD) or, for a sender verification mail,
-- until it is delivered. Only the outbox relay reads it.
CREATE TABLE message_contents (
    message_id uuid NOT NULL,
    account_id uuid NOT NULL,
    content    bytea NOT NULL,
    PRIMARY KEY (message_id)
) PARTITION BY RANGE (message_id);
SELECT pg_temp.make_partitions('message_contents', true);
INSERT INTO message_contents (message_id, account_id, content)
    SELECT id, account_id, content FROM messages_0011 WHERE content IS NOT NULL;
DROP TABLE messages_0011;

CREATE INDEX messages_account_id ON messages (account_id, id DESC);
CREATE INDEX messages_account_status ON messages (account_id, status, id DESC);
CREATE INDEX messages_account_created ON messages (account_id, created_at);
CREATE INDEX messages_tags ON messages USING gin (tags jsonb_path_ops);
CREATE INDEX messages_account_provider_message_id ON messages (account_id, provider_message_id)
    WHERE provider_message_id <> '';

-- recipients
ALTER TABLE recipients RENAME TO recipients_0011;
ALTER TABLE recipients_0011 RENAME CONSTRAINT recipients_pkey TO recipients_0011_pkey;
DROP INDEX recipients_account_address;
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
) PARTITION BY RANGE (message_id);
SELECT pg_temp.make_partitions('recipients', true);
INSERT INTO recipients (message_id, idx, account_id, kind, address, name, status, status_key, detail, updated_at)
    SELECT message_id, idx, account_id, kind, address, name, status, status_key, detail, updated_at
    FROM recipients_0011;
DROP TABLE recipients_0011;
CREATE INDEX recipients_account_address ON recipients (account_id, address);

-- events: the primary key gains message_id (a unique key of a partitioned
-- table holds its partition key); event ids are derived from the message
-- id (queue.EventID), so an event id is as unique as before.
ALTER TABLE events RENAME TO events_0011;
ALTER TABLE events_0011 RENAME CONSTRAINT events_pkey TO events_0011_pkey;
DROP INDEX events_message, events_account;
CREATE TABLE events (
    id                uuid NOT NULL,
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
    retry_at          timestamptz,
    PRIMARY KEY (message_id, id)
) PARTITION BY RANGE (message_id);
SELECT pg_temp.make_partitions('events', true);
INSERT INTO events (id, message_id, account_id, type, status, occurred_at, attempt, recipients,
        provider_response, error_class, detail, retry_at)
    SELECT id, message_id, account_id, type, status, occurred_at, attempt, recipients,
        provider_response, error_class, detail, retry_at
    FROM events_0011;
DROP TABLE events_0011;
CREATE INDEX events_message ON events (message_id, occurred_at);
CREATE INDEX events_account ON events (account_id);

-- usage_records, by at. The index on at served the row-by-row purge; the
-- partitions replace it.
ALTER TABLE usage_records RENAME TO usage_records_0011;
ALTER TABLE usage_records_0011 RENAME CONSTRAINT usage_records_pkey TO usage_records_0011_pkey;
DROP INDEX usage_records_at;
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
) PARTITION BY RANGE (at);
SELECT pg_temp.make_partitions('usage_records', false);
INSERT INTO usage_records (id, account_id, at, method, key_id, token_subject, client_ip, user_agent, result, duration_ms)
    SELECT id, account_id, at, method, key_id, token_subject, client_ip, user_agent, result, duration_ms
    FROM usage_records_0011;
DROP TABLE usage_records_0011;

-- idempotency_keys, by created_at. The primary key gains created_at, so it
-- no longer makes (account_id, key) unique by itself: ingest serialises
-- the claims of one key with an advisory lock and looks for a live one
-- (younger than 24 hours) before it inserts. Expired keys are dropped with
-- their partition.
ALTER TABLE idempotency_keys RENAME TO idempotency_keys_0011;
ALTER TABLE idempotency_keys_0011 RENAME CONSTRAINT idempotency_keys_pkey TO idempotency_keys_0011_pkey;
DROP INDEX idempotency_keys_created;
CREATE TABLE idempotency_keys (
    account_id   uuid NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    message_id   uuid NOT NULL,
    status       smallint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key, created_at)
) PARTITION BY RANGE (created_at);
SELECT pg_temp.make_partitions('idempotency_keys', false);
INSERT INTO idempotency_keys (account_id, key, request_hash, message_id, status, created_at)
    SELECT account_id, key, request_hash, message_id, status, created_at FROM idempotency_keys_0011;
DROP TABLE idempotency_keys_0011;

DROP FUNCTION pg_temp.make_partitions(text, boolean);
DROP FUNCTION pg_temp.id_bound(timestamptz);
