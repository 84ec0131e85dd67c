ALTER TABLE webhook_endpoints DROP COLUMN slow_since;
