-- ListMessages at scale (make bench-scale): every filter is answered by
-- walking an index in id order until the page is full, never by sorting all
-- the messages that match.
--
-- A recipient's messages, newest first: the report reads the message ids
-- from this index and looks each message up.
DROP INDEX recipients_account_address;
CREATE INDEX recipients_account_address ON recipients (account_id, address, message_id DESC);

-- A provider configuration's messages, newest first (a fallback that sends
-- one message in a thousand is found without reading the thousand).
CREATE INDEX messages_account_provider ON messages (account_id, provider_id, id DESC);

-- A time range is read as a range of ids (UUIDv7 of the creation time,
-- partition.IDsFrom) on (account_id, id): nothing reads this index any more,
-- and every accepted message paid for it.
DROP INDEX messages_account_created;
