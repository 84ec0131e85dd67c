-- When the endpoint's successes became slow: set by a 2xx that took more than half the attempt
-- timeout (OUTBOUND_WEBHOOK_TIMEOUT_MS), cleared by one that did not. An endpoint answering slowly
-- is claimed in the same lane as the failing ones, which hold at most half of an instance's
-- delivery places (docs/webhooks.md, "Isolation"); it is never disabled for it.
ALTER TABLE webhook_endpoints ADD COLUMN slow_since timestamptz;
