-- Webhooks (report service): endpoints per account, the deliveries of events
-- to them (an outbox the dispatcher works through) and every attempt made.

CREATE TABLE webhook_endpoints (
    id                  uuid PRIMARY KEY,
    account_id          uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url                 text NOT NULL,
    description         text NOT NULL DEFAULT '',
    -- Webhook event type names (accepted, sent, ...); empty: all.
    event_types         text[] NOT NULL DEFAULT '{}',
    -- Only messages with every one of these tags.
    tags                jsonb NOT NULL DEFAULT '{}',
    -- The signing secret, sealed by pkg/secretbox (it must be recoverable to sign).
    secret              bytea NOT NULL,
    -- After a rotation, the previous secret signs too until previous_expires_at.
    previous_secret     bytea,
    previous_expires_at timestamptz,
    enabled             boolean NOT NULL DEFAULT true,
    disabled_reason     text NOT NULL DEFAULT '',
    disabled_at         timestamptz,
    -- Start of the current run of failed attempts; NULL after a success.
    failing_since       timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id);

-- One event (for one recipient) to one endpoint. The id is deterministic per
-- (endpoint, event, recipient), so an event fanned out twice is one delivery;
-- it is also the webhook-id header.
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    account_id      uuid NOT NULL,
    event_id        text NOT NULL,
    -- EMAIL_EVENTS stream sequence: deliveries of one (endpoint, message,
    -- recipient) go out in this order.
    seq             bigint NOT NULL,
    event_type      text NOT NULL,
    message_id      uuid,
    recipient       text NOT NULL DEFAULT '',
    payload         bytea NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'succeeded', 'failed')),
    -- Attempts of the current retry schedule (a replay starts it over).
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, message_id, recipient, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_account ON webhook_deliveries (account_id);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

CREATE TABLE webhook_attempts (
    delivery_id      uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    account_id       uuid NOT NULL,
    at               timestamptz NOT NULL,
    -- 0 when there was no HTTP answer (error says why).
    status_code      integer NOT NULL DEFAULT 0,
    latency_ms       double precision NOT NULL DEFAULT 0,
    response_snippet text NOT NULL DEFAULT '',
    error            text NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, at);
CREATE INDEX webhook_attempts_account ON webhook_attempts (account_id);
