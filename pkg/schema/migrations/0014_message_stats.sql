-- GetStats' rollup: the account's messages counted per hour of creation,
-- provider configuration and current status, so that counting 30 days of a
-- large account reads thousands of rows, not millions of messages.
--
-- Whoever inserts or updates messages (ingest at acceptance, cancel and the
-- outbox; the report applying events) changes the counts through the
-- triggers below, in the same transaction, without taking a lock: each
-- statement appends its net change to message_stats_pending. The report
-- folds pending changes into message_stats in the background (report:
-- stats.go), and GetStats reads both, so its answer is exact at every moment
-- whether or not the fold has run.
--
-- Deleting messages changes no count: messages are deleted only with their
-- account (DeleteAccountData deletes the account's rows of these tables too,
-- they have an account_id) or by dropping an expired partition, which fires
-- no trigger: the counts of expired messages stay, and GetStats keeps
-- counting them.

CREATE TABLE message_stats (
    account_id  uuid NOT NULL,
    -- the hour the messages were created in: date_bin('1 hour', created_at, epoch)
    hour        timestamptz NOT NULL,
    provider_id uuid NOT NULL,
    status      smallint NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (account_id, hour, provider_id, status)
);

CREATE TABLE message_stats_pending (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  uuid NOT NULL,
    hour        timestamptz NOT NULL,
    provider_id uuid NOT NULL,
    status      smallint NOT NULL,
    delta       bigint NOT NULL
);
CREATE INDEX message_stats_pending_account ON message_stats_pending (account_id, hour);

-- The net change of one statement: +1 for each row as it is now, -1 for each
-- as it was. An update that changes neither status nor provider adds nothing.
CREATE FUNCTION message_stats_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO message_stats_pending (account_id, hour, provider_id, status, delta)
        SELECT account_id, date_bin('1 hour', created_at, '1970-01-01 00:00:00+00'), provider_id, status, count(*)
        FROM new_rows
        GROUP BY 1, 2, 3, 4;
    ELSE
        INSERT INTO message_stats_pending (account_id, hour, provider_id, status, delta)
        SELECT account_id, date_bin('1 hour', created_at, '1970-01-01 00:00:00+00'), provider_id, status, sum(d)
        FROM (
            SELECT account_id, created_at, provider_id, status, 1 AS d FROM new_rows
            UNION ALL
            SELECT account_id, created_at, provider_id, status, -1 FROM old_rows
        ) c
        GROUP BY 1, 2, 3, 4
        HAVING sum(d) <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- A trigger with transition tables serves one event.
CREATE TRIGGER messages_stats_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_stats_count();
CREATE TRIGGER messages_stats_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_stats_count();

-- The messages there are now. CREATE TRIGGER holds off writes to messages
-- until the migration commits, so no message is counted twice or missed.
INSERT INTO message_stats (account_id, hour, provider_id, status, count)
SELECT account_id, date_bin('1 hour', created_at, '1970-01-01 00:00:00+00'), provider_id, status, count(*)
FROM messages
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4; -- an account's rows together
