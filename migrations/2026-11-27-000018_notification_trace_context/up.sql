-- The trace a notification belongs to (docs/observability.md, "Traces"): the W3C `traceparent`
-- of the span whose transaction queued it, so that the worker's send, later and in a
-- transaction of its own, joins the RPC's trace. The service sets the transaction-local
-- `supportdesk.traceparent` in the round trip that opens a transaction, and only while traces
-- are on; the default picks it up, so every statement that queues a notification carries it
-- without naming it. NULL without traces, and for notifications queued outside any trace.
ALTER TABLE notifications
    ADD COLUMN trace_context text
        DEFAULT NULLIF(current_setting('supportdesk.traceparent', true), '')
        CONSTRAINT notifications_trace_context_is_a_traceparent
            CHECK (trace_context ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');
