-- Soft bounces in a row per address of an account (pkg/suppression): a soft
-- bounce (mailbox full, deferred) of another message than the last counted
-- adds one; a DELIVERED report, or a gap longer than the window, starts over;
-- reaching SUPPRESS_SOFT_BOUNCES suppresses the address (reason 'bounce').
-- Deleting the account's data removes its rows (account_id column).
CREATE TABLE bounce_streaks (
    account_id      uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address         text NOT NULL, -- lower-cased canonical address
    soft_bounces    integer NOT NULL,
    last_message_id uuid NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (account_id, address)
);
