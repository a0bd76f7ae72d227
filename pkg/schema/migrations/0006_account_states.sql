-- Account states (pkg/accountstate): one row per account that is not simply
-- active. Deliberately without an account_id column (the account is the
-- primary key "account"), so that deleting an account's data, which removes
-- every row of every table with an account_id column, leaves its state:
--   suspended   sends refused, queued mail held (operator);
--   terminated  data deleted, no re-provisioning by token (operator); kept;
--   deleted     DeleteAccountData under way: workers send nothing more for it
--               and the report drops its late events; removed by the final
--               sweep (account_sweeps).
-- version orders the changes (the KV mirror's watchers apply only newer ones).
CREATE TABLE account_states (
    account    uuid PRIMARY KEY,
    state      text NOT NULL CHECK (state IN ('suspended', 'terminated', 'deleted')),
    reason     text NOT NULL DEFAULT '',
    actor      text NOT NULL DEFAULT '',
    changed_at timestamptz NOT NULL,
    version    bigint NOT NULL
);
CREATE SEQUENCE account_states_version;

-- Final sweeps of deleted or terminated accounts: durable work ingest runs
-- once due_at has passed (after the longest send), surviving restarts. The
-- row names the account (needed to purge its subjects) and is removed when
-- the sweep is done; message_ids are the account's messages that were not
-- final at deletion (their attempt records may still be written by a send in
-- flight).
CREATE TABLE account_sweeps (
    account     uuid PRIMARY KEY,
    audit_id    uuid NOT NULL,
    due_at      timestamptz NOT NULL,
    message_ids text[] NOT NULL DEFAULT '{}',
    attempts    int NOT NULL DEFAULT 0,
    last_error  text NOT NULL DEFAULT ''
);
CREATE INDEX account_sweeps_due ON account_sweeps (due_at);

-- Every operator action (suspend, resume, terminate), readable by the
-- operator: who, what, which account, why, when, and what it found.
CREATE TABLE operator_audit (
    id      uuid PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    account uuid NOT NULL,
    reason  text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX operator_audit_account ON operator_audit (account, at DESC);
CREATE INDEX operator_audit_at ON operator_audit (at DESC);

-- What the final sweep of a deletion found (late jobs, events, attempt
-- records, consumers, rows), and when it ran.
ALTER TABLE account_deletions ADD COLUMN final_sweep jsonb, ADD COLUMN swept_at timestamptz;
