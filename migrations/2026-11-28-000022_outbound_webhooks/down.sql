DROP TRIGGER webhook_endpoints_disabled_events ON webhook_endpoints;
DROP FUNCTION webhook_endpoints_disabled_events();
DROP TRIGGER refunds_succeeded_events ON refunds;
DROP FUNCTION refunds_succeeded_events();
DROP TRIGGER charges_settled_events ON charges;
DROP FUNCTION charges_settled_events();
DROP TRIGGER ticket_comments_created_events ON ticket_comments;
DROP FUNCTION ticket_comments_created_events();
DROP TRIGGER tickets_changed_events ON tickets;
DROP FUNCTION tickets_changed_events();
DROP TRIGGER tickets_created_events ON tickets;
DROP FUNCTION tickets_created_events();
DROP FUNCTION ticket_event_snapshot(tickets);
DROP TABLE webhook_delivery_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE events;
DROP TABLE webhook_endpoints;
DELETE FROM notifications WHERE kind = 'endpoint_disabled';
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check CHECK (kind IN (
    'ticket_created', 'comment_added', 'ticket_solved',
    'password_reset', 'invitation', 'charge_receipt', 'refund_notice'
));
