// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "tsvector", schema = "pg_catalog"))]
    pub struct Tsvector;
}

diesel::table! {
    account_tags (account_id, tag) {
        account_id -> Uuid,
        tag -> Text,
        ticket_count -> Int8,
    }
}

diesel::table! {
    accounts (id) {
        id -> Uuid,
        name -> Text,
        slug -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        account_id -> Uuid,
        name -> Text,
        prefix -> Text,
        secret_hash -> Bytea,
        roles -> Array<Nullable<Text>>,
        created_by -> Uuid,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    attachments (id) {
        id -> Uuid,
        account_id -> Uuid,
        ticket_id -> Uuid,
        comment_id -> Nullable<Uuid>,
        internal -> Bool,
        uploader_user_id -> Nullable<Uuid>,
        uploader_api_key_id -> Nullable<Uuid>,
        filename -> Text,
        content_type -> Text,
        size_bytes -> Int8,
        sha256 -> Bytea,
        object_key -> Text,
        state -> Text,
        upload_expires_at -> Timestamptz,
        created_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    charge_activities (id) {
        id -> Uuid,
        account_id -> Uuid,
        charge_id -> Uuid,
        actor_user_id -> Nullable<Uuid>,
        actor_api_key_id -> Nullable<Uuid>,
        action -> Text,
        changes -> Jsonb,
        created_at -> Timestamptz,
        webhook_event_id -> Nullable<Text>,
        reconciliation_run_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    charge_disputes (id) {
        id -> Uuid,
        account_id -> Uuid,
        charge_id -> Uuid,
        provider_dispute_id -> Text,
        amount_minor -> Int8,
        currency -> Text,
        reason -> Text,
        status -> Text,
        opened_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    charges (id) {
        id -> Uuid,
        account_id -> Uuid,
        customer_id -> Uuid,
        ticket_id -> Nullable<Uuid>,
        amount_minor -> Int8,
        amount_refunded_minor -> Int8,
        currency -> Text,
        payment_method -> Text,
        status -> Text,
        provider_payment_id -> Nullable<Text>,
        failure_code -> Nullable<Text>,
        decline_code -> Nullable<Text>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        failure_kind -> Nullable<Text>,
        failure_param -> Nullable<Text>,
        send_lease_token -> Nullable<Uuid>,
        send_lease_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_attempt_error -> Nullable<Text>,
        attention_reason -> Nullable<Text>,
        attention_since -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    custom_fields (id) {
        id -> Uuid,
        account_id -> Uuid,
        key -> Text,
        title -> Text,
        kind -> Text,
        choices -> Array<Nullable<Text>>,
        pattern -> Nullable<Text>,
        description -> Text,
        customer_visible -> Bool,
        customer_editable -> Bool,
        required_to_solve -> Bool,
        position -> Int4,
        retired_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    email_events (id) {
        id -> Text,
        event_type -> Text,
        account_id -> Nullable<Uuid>,
        notification_id -> Nullable<Uuid>,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    email_suppressions (id) {
        id -> Uuid,
        account_id -> Uuid,
        address -> Text,
        reason -> Text,
        detail -> Text,
        notification_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    events (id) {
        id -> Uuid,
        seq -> Int8,
        account_id -> Uuid,
        #[sql_name = "type"]
        type_ -> Text,
        resource_id -> Uuid,
        changed_fields -> Array<Nullable<Text>>,
        snapshot -> Jsonb,
        endpoint_id -> Nullable<Uuid>,
        txid -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    group_members (account_id, group_id, user_id) {
        account_id -> Uuid,
        group_id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    groups (id) {
        id -> Uuid,
        account_id -> Uuid,
        name -> Text,
        description -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    idempotency_keys (id) {
        id -> Uuid,
        caller -> Text,
        rpc -> Text,
        key -> Text,
        request_hash -> Bytea,
        status_code -> Int4,
        status_message -> Text,
        status_details -> Nullable<Bytea>,
        response_body -> Nullable<Bytea>,
        response_metadata -> Jsonb,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        recovery_point -> Nullable<Text>,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        account_id -> Uuid,
        kind -> Text,
        recipient_user_id -> Uuid,
        recipient_address -> Text,
        data -> Jsonb,
        message_id -> Text,
        ticket_id -> Nullable<Uuid>,
        state -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        lease_expires_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        outcome -> Nullable<Text>,
        redrive_count -> Int4,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        dead_at -> Nullable<Timestamptz>,
        provider_message_id -> Nullable<Text>,
        skip_reason -> Nullable<Text>,
        skipped_at -> Nullable<Timestamptz>,
        dedupe_key -> Nullable<Text>,
        trace_context -> Nullable<Text>,
        handed_over_attempt -> Nullable<Int4>,
        unconfirmed_sends -> Int4,
    }
}

diesel::table! {
    operations (id) {
        id -> Uuid,
        account_id -> Uuid,
        kind -> Text,
        state -> Text,
        actor_user_id -> Nullable<Uuid>,
        actor_api_key_id -> Nullable<Uuid>,
        format -> Text,
        content -> Nullable<Text>,
        rows_total -> Int8,
        rows_read -> Int8,
        rows_imported -> Int8,
        rows_failed -> Int8,
        row_errors -> Jsonb,
        cancel_requested -> Bool,
        error_code -> Nullable<Int4>,
        error_message -> Nullable<Text>,
        lease_owner -> Nullable<Uuid>,
        lease_expires_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        done_at -> Nullable<Timestamptz>,
        batch_failures -> Int4,
        claims_without_progress -> Int4,
    }
}

diesel::table! {
    password_tokens (id) {
        id -> Uuid,
        account_id -> Uuid,
        user_id -> Uuid,
        purpose -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        notification_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    reconciliation_findings (id) {
        id -> Uuid,
        run_id -> Uuid,
        kind -> Text,
        account_id -> Nullable<Uuid>,
        charge_id -> Nullable<Uuid>,
        refund_id -> Nullable<Uuid>,
        provider_object_id -> Nullable<Text>,
        details -> Jsonb,
        action -> Text,
        repaired -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    reconciliation_runs (id) {
        id -> Uuid,
        period_start -> Timestamptz,
        period_end -> Timestamptz,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        status -> Text,
        error -> Nullable<Text>,
        charges_checked -> Int4,
        refunds_checked -> Int4,
        payments_listed -> Int4,
        findings -> Int4,
        repaired -> Int4,
    }
}

diesel::table! {
    refunds (id) {
        id -> Uuid,
        account_id -> Uuid,
        charge_id -> Uuid,
        amount_minor -> Int8,
        currency -> Text,
        status -> Text,
        provider_refund_id -> Nullable<Text>,
        failure_code -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        send_lease_token -> Nullable<Uuid>,
        send_lease_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_attempt_error -> Nullable<Text>,
        attention_reason -> Nullable<Text>,
        attention_since -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    requester_open_tickets (account_id, requester_id) {
        account_id -> Uuid,
        requester_id -> Uuid,
        tickets -> Int8,
    }
}

diesel::table! {
    revenue_daily (account_id, currency, day) {
        account_id -> Uuid,
        currency -> Text,
        day -> Date,
        charge_count -> Int8,
        gross_minor -> Int8,
        refunded_minor -> Int8,
    }
}

diesel::table! {
    revoked_sessions (session_id) {
        session_id -> Uuid,
        user_id -> Uuid,
        revoked_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    schedules (id) {
        id -> Uuid,
        account_id -> Uuid,
        name -> Text,
        time_zone -> Text,
        intervals -> Jsonb,
        holidays -> Jsonb,
        revision -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sla_policies (id) {
        id -> Uuid,
        account_id -> Uuid,
        name -> Text,
        description -> Text,
        position -> Int4,
        filter -> Text,
        schedule_id -> Nullable<Uuid>,
        targets -> Jsonb,
        warning_minutes -> Int4,
        revision -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sla_policy_revisions (account_id, policy_id, revision) {
        account_id -> Uuid,
        policy_id -> Uuid,
        revision -> Int4,
        name -> Text,
        filter -> Text,
        schedule_id -> Nullable<Uuid>,
        targets -> Jsonb,
        warning_minutes -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    storage_deletions (object_key) {
        object_key -> Text,
        due_at -> Timestamptz,
        attempts -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ticket_activities (id) {
        id -> Uuid,
        account_id -> Uuid,
        ticket_id -> Uuid,
        actor_user_id -> Nullable<Uuid>,
        actor_api_key_id -> Nullable<Uuid>,
        action -> Text,
        changes -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ticket_comments (id) {
        id -> Uuid,
        account_id -> Uuid,
        ticket_id -> Uuid,
        author_user_id -> Nullable<Uuid>,
        author_api_key_id -> Nullable<Uuid>,
        body -> Text,
        public -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ticket_counts_daily (account_id, day) {
        account_id -> Uuid,
        day -> Date,
        created -> Int8,
        solved -> Int8,
    }
}

diesel::table! {
    ticket_counts_open (account_id, status, priority) {
        account_id -> Uuid,
        status -> Text,
        priority -> Text,
        tickets -> Int8,
    }
}

diesel::table! {
    ticket_response_histograms (account_id, measure, period, starts_on, bucket) {
        account_id -> Uuid,
        measure -> Text,
        period -> Text,
        starts_on -> Date,
        bucket -> Int2,
        tickets -> Int4,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::Tsvector;

    tickets (id) {
        id -> Uuid,
        account_id -> Uuid,
        subject -> Text,
        description -> Text,
        priority -> Text,
        status -> Text,
        requester_id -> Uuid,
        assignee_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
        deleted_at -> Nullable<Timestamptz>,
        change_txid -> Int8,
        public_comments -> Text,
        search_document -> Nullable<Tsvector>,
        first_agent_response_at -> Nullable<Timestamptz>,
        solved_at -> Nullable<Timestamptz>,
        tags -> Array<Nullable<Text>>,
        custom_fields -> Jsonb,
        group_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        account_id -> Uuid,
        email -> Text,
        display_name -> Text,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        password_hash -> Nullable<Text>,
        active -> Bool,
        comment_notifications -> Bool,
    }
}

diesel::table! {
    views (id) {
        id -> Uuid,
        account_id -> Uuid,
        name -> Text,
        filter -> Text,
        order_by -> Text,
        read_mask -> Array<Nullable<Text>>,
        scope -> Text,
        group_id -> Nullable<Uuid>,
        owner_id -> Uuid,
        position -> Int4,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        account_id -> Uuid,
        endpoint_id -> Uuid,
        event_id -> Uuid,
        event_seq -> Int8,
        event_type -> Text,
        state -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_attempt_at -> Nullable<Timestamptz>,
        last_http_status -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        redrive_count -> Int4,
        created_at -> Timestamptz,
        done_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_delivery_attempts (delivery_id, attempt) {
        delivery_id -> Uuid,
        attempt -> Int4,
        account_id -> Uuid,
        endpoint_id -> Uuid,
        url -> Text,
        started_at -> Timestamptz,
        latency_ms -> Int4,
        http_status -> Nullable<Int4>,
        error -> Nullable<Text>,
        response_excerpt -> Text,
    }
}

diesel::table! {
    webhook_endpoint_secrets (id) {
        id -> Uuid,
        endpoint_id -> Uuid,
        secret_ciphertext -> Bytea,
        retired_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        account_id -> Uuid,
        url -> Text,
        description -> Text,
        event_types -> Array<Nullable<Text>>,
        secret_ciphertext -> Bytea,
        previous_secret_ciphertext -> Nullable<Bytea>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        state -> Text,
        disabled_reason -> Nullable<Text>,
        disabled_at -> Nullable<Timestamptz>,
        failing_since -> Nullable<Timestamptz>,
        last_success_at -> Nullable<Timestamptz>,
        retry_at -> Nullable<Timestamptz>,
        lease_token -> Nullable<Uuid>,
        lease_until -> Nullable<Timestamptz>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        slow_since -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_event_quarantines (event_id) {
        event_id -> Text,
        reason -> Text,
        named_account_id -> Uuid,
        named_charge_id -> Uuid,
        payment_id -> Text,
        payment_account_id -> Nullable<Uuid>,
        payment_charge_id -> Nullable<Uuid>,
        quarantined_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Text,
        event_type -> Text,
        payload -> Bytea,
        provider_created_at -> Timestamptz,
        account_id -> Nullable<Uuid>,
        charge_id -> Nullable<Uuid>,
        state -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        lease_expires_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        outcome -> Nullable<Text>,
        redrive_count -> Int4,
        received_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
        dead_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(account_tags -> accounts (account_id));
diesel::joinable!(api_keys -> accounts (account_id));
diesel::joinable!(attachments -> accounts (account_id));
diesel::joinable!(attachments -> api_keys (uploader_api_key_id));
diesel::joinable!(attachments -> ticket_comments (comment_id));
diesel::joinable!(charge_activities -> api_keys (actor_api_key_id));
diesel::joinable!(charge_activities -> reconciliation_runs (reconciliation_run_id));
diesel::joinable!(charge_activities -> webhook_events (webhook_event_id));
diesel::joinable!(charges -> accounts (account_id));
diesel::joinable!(custom_fields -> accounts (account_id));
diesel::joinable!(email_events -> accounts (account_id));
diesel::joinable!(email_events -> notifications (notification_id));
diesel::joinable!(email_suppressions -> accounts (account_id));
diesel::joinable!(email_suppressions -> notifications (notification_id));
diesel::joinable!(events -> webhook_endpoints (endpoint_id));
diesel::joinable!(groups -> accounts (account_id));
diesel::joinable!(notifications -> accounts (account_id));
diesel::joinable!(notifications -> tickets (ticket_id));
diesel::joinable!(operations -> accounts (account_id));
diesel::joinable!(reconciliation_findings -> accounts (account_id));
diesel::joinable!(reconciliation_findings -> reconciliation_runs (run_id));
diesel::joinable!(requester_open_tickets -> accounts (account_id));
diesel::joinable!(revenue_daily -> accounts (account_id));
diesel::joinable!(schedules -> accounts (account_id));
diesel::joinable!(sla_policies -> accounts (account_id));
diesel::joinable!(ticket_activities -> api_keys (actor_api_key_id));
diesel::joinable!(ticket_comments -> api_keys (author_api_key_id));
diesel::joinable!(ticket_counts_daily -> accounts (account_id));
diesel::joinable!(ticket_counts_open -> accounts (account_id));
diesel::joinable!(ticket_response_histograms -> accounts (account_id));
diesel::joinable!(tickets -> accounts (account_id));
diesel::joinable!(users -> accounts (account_id));
diesel::joinable!(views -> accounts (account_id));
diesel::joinable!(webhook_deliveries -> events (event_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_delivery_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(webhook_endpoint_secrets -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_endpoints -> accounts (account_id));
diesel::joinable!(webhook_event_quarantines -> webhook_events (event_id));
diesel::joinable!(webhook_events -> accounts (account_id));

diesel::allow_tables_to_appear_in_same_query!(
    account_tags,
    accounts,
    api_keys,
    attachments,
    charge_activities,
    charge_disputes,
    charges,
    custom_fields,
    email_events,
    email_suppressions,
    events,
    group_members,
    groups,
    idempotency_keys,
    notifications,
    operations,
    password_tokens,
    reconciliation_findings,
    reconciliation_runs,
    refunds,
    requester_open_tickets,
    revenue_daily,
    revoked_sessions,
    schedules,
    sla_policies,
    sla_policy_revisions,
    storage_deletions,
    ticket_activities,
    ticket_comments,
    ticket_counts_daily,
    ticket_counts_open,
    ticket_response_histograms,
    tickets,
    users,
    views,
    webhook_deliveries,
    webhook_delivery_attempts,
    webhook_endpoint_secrets,
    webhook_endpoints,
    webhook_event_quarantines,
    webhook_events,
);
