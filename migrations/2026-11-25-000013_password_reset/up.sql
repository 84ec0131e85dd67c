-- Password resets, invitations, revoked sessions and billing notices (docs/identity.md,
-- docs/notifications.md).

-- Single-use tokens that set a user's password: a reset (RequestPasswordReset, 30 minutes) or an
-- invitation (CreateUser, 7 days). Only the token's SHA-256 is kept: the token itself is an HMAC
-- of a random seed under a key derived from JWT_SECRET, so neither this table nor the outbox
-- row that carries the seed is enough to use it.
CREATE TABLE password_tokens (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    user_id uuid NOT NULL,
    purpose text NOT NULL CHECK (purpose IN ('reset', 'invitation')),
    token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set once, when the token sets a password: a token is used at most once.
    used_at timestamptz,
    CONSTRAINT password_tokens_user_fkey FOREIGN KEY (account_id, user_id)
        REFERENCES users (account_id, id)
);
CREATE INDEX password_tokens_user_idx ON password_tokens (account_id, user_id);

-- Sessions ended before their access tokens expired (Logout, LogoutAll, ResetPassword, a reused
-- refresh token, a deactivation): the truth behind Redis's `revoked-session:<sid>` markers,
-- read when Redis knows nothing of the caller. A row matters only until `expires_at` (the end of
-- the longest access token its session could have had).
CREATE TABLE revoked_sessions (
    session_id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_sessions_user_idx ON revoked_sessions (user_id, expires_at);

-- The new kinds of notification.
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check CHECK (kind IN (
    'ticket_created', 'comment_added', 'ticket_solved',
    'password_reset', 'invitation', 'charge_receipt', 'refund_notice'
));
-- What makes a notification one of a kind when several paths may write it (a charge's receipt:
-- `charge_receipt:<charge id>`): a second write is a no-op (ON CONFLICT DO NOTHING).
ALTER TABLE notifications ADD COLUMN dedupe_key text UNIQUE;
