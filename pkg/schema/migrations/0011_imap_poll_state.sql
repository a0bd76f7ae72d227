-- How far the inbound service's IMAP poller has read the bounce mailbox of
-- an SMTP provider configuration (its bounce_imap settings): the mailbox's
-- UIDVALIDITY and the highest UID handled in it. A restart goes on after
-- last_uid; a changed UIDVALIDITY (the mailbox was recreated) starts over,
-- and the poller's keyword on handled mail keeps it from counting them
-- twice. Deleting the configuration or the account's data removes its row.
CREATE TABLE imap_poll_state (
    provider_id  uuid PRIMARY KEY REFERENCES provider_configs (id) ON DELETE CASCADE,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox      text NOT NULL,
    uid_validity bigint NOT NULL,
    last_uid     bigint NOT NULL,
    -- The last poll's error ('' after a good one), without secrets.
    last_error   text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL
);
