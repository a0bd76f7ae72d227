-- Accounts' own bounce domains (pkg/bouncedomain): a domain whose MX points
-- at the inbound service, used instead of the operator's BOUNCE_DOMAIN for
-- the VERP envelope senders of the account's SMTP sends once the account has
-- proven it holds the domain (a DNS TXT record with the registration's
-- token). One per account; several accounts may claim a domain, but it is
-- verified for one account at most (the partial unique index).
CREATE TABLE bounce_domains (
    account_id  uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- Lower-case ASCII (punycode) domain name, no trailing dot.
    domain      text NOT NULL,
    -- The random token the TXT record must hold (not a secret: it is
    -- published in DNS; it only ties the record to this registration).
    token       text NOT NULL,
    created_at  timestamptz NOT NULL,
    verified_at timestamptz,
    -- The last verification attempt and what it found ('' before one).
    checked_at  timestamptz,
    last_check  text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX bounce_domains_verified ON bounce_domains (domain) WHERE verified_at IS NOT NULL;
