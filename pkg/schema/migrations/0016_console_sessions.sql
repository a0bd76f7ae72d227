-- The console's sessions (services/report/console). A session is named by a
-- random 256-bit token that only its cookie holds; the row keeps its SHA-256.
-- Signing out deletes the row; a session ends at expires_at (absolute) or
-- when it was idle longer than CONSOLE_SESSION_IDLE (last_seen_at), and a
-- session signed in with an API key ends when the key is revoked or expires.
CREATE TABLE console_sessions (
    token_hash   bytea PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- How it was signed in: 'api_key' (key_id set) or 'oidc' (subject set).
    method       text NOT NULL CHECK (method IN ('api_key', 'oidc')),
    key_id       uuid REFERENCES api_keys (id) ON DELETE CASCADE,
    subject      text NOT NULL DEFAULT '',
    -- The scopes, as the API gives the credential (pkg/auth).
    scopes       text[] NOT NULL,
    -- The credential it was signed in with (the API key, or the Namirasoft
    -- Account ID token), sealed by pkg/secretbox with the token hash as
    -- associated data: what the console presents to ingest's API for the
    -- actions that belong there. NULL without MASTER_KEYS.
    credential   bytea,
    -- The per-session CSRF token every POST must carry.
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    CHECK ((method = 'api_key') = (key_id IS NOT NULL))
);
CREATE INDEX console_sessions_account ON console_sessions (account_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- OpenID Connect sign-ins under way: the PKCE verifier and nonce of a state,
-- used once by the callback, good for ten minutes.
CREATE TABLE console_oidc_logins (
    state_hash bytea PRIMARY KEY,
    verifier   text NOT NULL,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL
);
