-- The Gmail bounce poller (the worker's services/worker/gmailpoll): per gmail
-- provider configuration, the mailbox's historyId up to which its history
-- (users.history.list) has been read and its bounce notices recorded. A
-- historyId is a uint64 (numeric). Deleting the account's data removes its
-- rows (account_id column); a deleted configuration's row is removed by the
-- poller.
CREATE TABLE gmail_poll_cursors (
    provider_id uuid PRIMARY KEY,
    account_id  uuid NOT NULL,
    history_id  numeric(20, 0) NOT NULL CHECK (history_id >= 0),
    updated_at  timestamptz NOT NULL
);
CREATE INDEX gmail_poll_cursors_account ON gmail_poll_cursors (account_id);
