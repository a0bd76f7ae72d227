-- message_stats (GetStats' hourly rollup, migration 0014) becomes a table
-- partitioned by RANGE of its hour, managed by pkg/partition like messages:
-- ingest's partition manager makes its periods ahead and drops those whose
-- whole range is older than METADATA_RETENTION, in the same pass that drops
-- the messages of those hours (and keeps them while the outbox holds a
-- message of their range, as it keeps the messages). Before, dropping an
-- expired partition of messages left its counts, and message_stats grew for
-- ever.
--
-- Every row is kept: the table is renamed, its rows copied into the new one
-- and the old one dropped, inside the migration's transaction (a few seconds
-- per million rows). Like the partitions migration (0013) it gives the table
-- three partitions that take every key:
--   message_stats_history         [MINVALUE, B0)          the counts that exist now
--   message_stats_pYYYYMMDD_HHMM  [B0, B0 + 1 day)
--   message_stats_future          [B0 + 1 day, MAXVALUE)
-- where B0 is the minute this migration runs; the manager makes the periods
-- after, and drops the history partition once all of it has expired.
--
-- The report's fold writes message_stats; it waits for this migration's
-- lock and then writes the new table. message_stats_pending is not
-- partitioned: the fold empties it every REPORT_STATS_FOLD_INTERVAL.

ALTER TABLE message_stats RENAME TO message_stats_0014;
ALTER TABLE message_stats_0014 RENAME CONSTRAINT message_stats_pkey TO message_stats_0014_pkey;

CREATE TABLE message_stats (
    account_id  uuid NOT NULL,
    -- the hour the messages were created in: date_bin('1 hour', created_at, epoch)
    hour        timestamptz NOT NULL,
    provider_id uuid NOT NULL,
    status      smallint NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (account_id, hour, provider_id, status)
) PARTITION BY RANGE (hour);

DO $$
DECLARE
    b0 timestamptz := date_trunc('minute', now());
    b1 timestamptz := date_trunc('minute', now()) + interval '1 day';
BEGIN
    EXECUTE format('CREATE TABLE message_stats_history PARTITION OF message_stats FOR VALUES FROM (MINVALUE) TO (%L)', b0);
    EXECUTE format('CREATE TABLE %I PARTITION OF message_stats FOR VALUES FROM (%L) TO (%L)',
        'message_stats_p' || to_char(b0 AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI'), b0, b1);
    EXECUTE format('CREATE TABLE message_stats_future PARTITION OF message_stats FOR VALUES FROM (%L) TO (MAXVALUE)', b1);
END
$$;

INSERT INTO message_stats (account_id, hour, provider_id, status, count)
SELECT account_id, hour, provider_id, status, count
FROM message_stats_0014
ORDER BY 1, 2, 3, 4; -- an account's rows together
DROP TABLE message_stats_0014;
