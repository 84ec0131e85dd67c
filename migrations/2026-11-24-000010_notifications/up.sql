-- Email notifications (docs/notifications.md): a transactional outbox. A change that notifies
-- someone writes its row here in its own transaction (a rolled-back change leaves none); the
-- notification workers then take the rows as a queue, with the same columns and statements as
-- webhook_events (src/db/queue.rs), and send each message once.
CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    -- What happened: ticket_created (the acknowledgement to the requester), comment_added (a
    -- public comment from the desk, to the requester), ticket_solved (the notice to the requester).
    kind text NOT NULL CHECK (kind IN ('ticket_created', 'comment_added', 'ticket_solved')),
    -- Who it is for: the user, and the address it goes to (as it was when the change committed).
    recipient_user_id uuid NOT NULL,
    recipient_address text NOT NULL CHECK (char_length(recipient_address) BETWEEN 3 AND 254),
    -- What the message says (the ticket's subject, ...), as the change saw it: a later edit does
    -- not change a message already queued.
    data jsonb NOT NULL,
    -- The message's `Message-ID`, fixed when the row is written: every attempt sends the same one,
    -- so a message sent twice (a lost answer after the server accepted it) threads and dedupes.
    message_id text NOT NULL UNIQUE CHECK (message_id ~ '^<[^<>[:space:]]+@[^<>[:space:]]+>$'),
    -- The ticket the message is about: its mails thread together.
    ticket_id uuid REFERENCES tickets (id),
    -- received: waiting for (or being sent by) a worker; sent: accepted by the mail server;
    -- dead: refused for good, or failed `attempts` times, waiting for an operator.
    state text NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'sent', 'dead')),
    -- Sending attempts since the row was written or last re-driven.
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A received row is due once this time has passed (backoff after a failed attempt).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- The lease of the worker sending it: until then no other worker takes it.
    lease_expires_at timestamptz,
    -- Why the last attempt failed (the mail server's answer; no secrets).
    last_error text,
    -- What sending did: `sent` (the server's answer in last_error is then NULL).
    outcome text,
    -- How often an operator re-drove the row out of the dead state.
    redrive_count integer NOT NULL DEFAULT 0 CHECK (redrive_count >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    dead_at timestamptz,
    CONSTRAINT notifications_recipient_fkey FOREIGN KEY (account_id, recipient_user_id)
        REFERENCES users (account_id, id),
    CONSTRAINT notifications_sent_has_time CHECK ((state = 'sent') = (sent_at IS NOT NULL)),
    CONSTRAINT notifications_dead_has_time CHECK ((state = 'dead') = (dead_at IS NOT NULL))
);

-- The queue: received notifications, soonest due first.
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE state = 'received';
-- An account's notifications by state, newest first (operators' reads, re-drive).
CREATE INDEX notifications_account_state_idx
    ON notifications (account_id, state, created_at DESC, id DESC);
-- Foreign keys, so checking a ticket or a user never scans notifications.
CREATE INDEX notifications_ticket_idx ON notifications (ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX notifications_recipient_idx ON notifications (account_id, recipient_user_id);
