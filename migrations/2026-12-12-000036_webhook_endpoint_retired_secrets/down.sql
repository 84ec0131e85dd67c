DROP TABLE webhook_endpoint_secrets;
