DROP TABLE webhook_event_quarantines;
