-- A sender verified by a provider's own identity check (method ses_identity:
-- SES says the address or its domain is a verified identity of that
-- provider's AWS account) proves nothing about the account's other
-- providers: ingest lets it be sent from only through the provider in
-- provider_id. A mailed code (method code) proves control of the mailbox and,
-- like the operator's bootstrap, counts for every provider of the account.
--
-- Every ses_identity sender is written with its provider; one without (the
-- column is nullable) could be bound to none, so it goes back to pending.
UPDATE senders SET status = 'pending', verified_at = NULL
WHERE method = 'ses_identity' AND provider_id IS NULL;

ALTER TABLE senders ADD CONSTRAINT senders_identity_bound_to_provider
    CHECK (method <> 'ses_identity' OR provider_id IS NOT NULL);
