//! RefundCharge: reserving the amount on the charge, asking the provider, recording the outcome,
//! and refreshing a charge refunded outside the service.

use super::*;

/// What the provider said of a refund.
#[derive(Debug)]
pub(super) enum RefundAnswer {
    Refunded {
        provider_refund_id: String,
    },
    /// Refused or failed at the provider: the refund ends FAILED with `code`, its amount released.
    Refused {
        provider_refund_id: Option<String>,
        code: String,
        refusal: RefundRefusal,
    },
}

/// How a refused refund is answered.
#[derive(Debug)]
pub(super) enum RefundRefusal {
    /// The charge is disputed at the provider.
    Disputed,
    /// The provider accepted the refund and then failed or canceled it.
    FailedAtProvider,
    /// More is refunded at the provider than the service knew (a refund in its dashboard whose
    /// event has not arrived): the charge is refreshed from the provider, and the answer follows.
    NotEnoughLeft,
    /// Another refusal of the request, answered as the provider put it.
    Provider {
        param: Option<String>,
        message: String,
    },
}

/// Locks the charge, reserves the refund's amount on it (the domain decides whether it fits),
/// and inserts the refund pending, with the audit record. A disputed charge is refused, as the
/// provider would refuse it.
pub(super) async fn reserve_refund(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    actor: Actor,
    charge_id: ChargeId,
    amount: Option<Money>,
) -> AppResult<StoredRefund> {
    let locked = ChargeRow::lock(conn, account_id, charge_id)
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Charge, charge_id))?;
    if !charge_dispute::disputes_of_charge(conn, charge_id.as_uuid())
        .await?
        .is_empty()
    {
        return Err(disputed(&locked.charge));
    }
    let amount = amount.unwrap_or_else(|| locked.charge.refundable());
    let decision = locked
        .charge
        .apply(&ChargeEvent::RefundReserved { amount })
        .map_err(|violation| refusal(&locked.charge, &violation))?;
    let saved = ChargeRow::save(conn, &decision.after).await?;
    let refund = NewRefund {
        id: RefundId::generate().as_uuid(),
        account_id: account_id.as_uuid(),
        charge_id: charge_id.as_uuid(),
        amount_minor: amount.amount_minor(),
        currency: amount.currency().code(),
        status: RefundStatus::Pending.as_str(),
    }
    .insert(conn)
    .await?;
    record(
        conn,
        &saved.charge,
        Some(actor),
        decision.action,
        json!({
            "refund_id": refund.id.to_string(),
            "amount_minor": amount.amount_minor(),
            "status": {"old": locked.charge.status.as_str(), "new": saved.charge.status.as_str()},
        }),
    )
    .await?;
    Ok(refund)
}

/// Records the provider's answer over a locked pending refund: succeeded, or failed with its
/// amount released on the charge. The charge as it is after.
pub(super) async fn finish_refund(
    conn: &mut AsyncPgConnection,
    refund: &StoredRefund,
    answer: &RefundAnswer,
    actor: Option<Actor>,
    message_domain: &str,
) -> AppResult<StoredCharge> {
    let changes =
        json!({"refund_id": refund.id.to_string(), "amount_minor": refund.amount.amount_minor()});
    match answer {
        RefundAnswer::Refunded { provider_refund_id } => {
            RefundRow::finish(
                conn,
                refund.id,
                RefundStatus::Succeeded,
                Some(provider_refund_id),
                None,
            )
            .await?;
            // The customer's notice, in the transaction that records the success: once per
            // refund, whoever records it.
            notification::payment_notices::refund_notice(conn, refund.id.as_uuid(), message_domain)
                .await?;
            let charge = ChargeRow::find(conn, refund.account_id, None, refund.charge_id)
                .await?
                .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?;
            record(conn, &charge.charge, actor, "refunded", changes).await?;
            Ok(charge)
        }
        RefundAnswer::Refused {
            provider_refund_id,
            code,
            ..
        } => {
            RefundRow::finish(
                conn,
                refund.id,
                RefundStatus::Failed,
                provider_refund_id.as_deref(),
                Some(code),
            )
            .await?;
            // The money was not returned: its amount is available to refund again.
            let locked = ChargeRow::lock(conn, refund.account_id, refund.charge_id)
                .await?
                .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?;
            let decision = locked
                .charge
                .apply(&ChargeEvent::RefundReleased {
                    amount: refund.amount,
                })
                .map_err(|violation| AppError::internal(anyhow::anyhow!(violation)))?;
            let saved = ChargeRow::save(conn, &decision.after).await?;
            record(conn, &saved.charge, actor, decision.action, changes).await?;
            Ok(saved)
        }
    }
}

/// The answer of a refund the provider answered: the charge when refunded, else the refusal
/// as the client hears it (a refusal for lack of refundable amount is decided after the refresh).
pub(super) fn refund_outcome(
    charge: &StoredCharge,
    refund: &StoredRefund,
    answer: &RefundAnswer,
) -> Outcome<StoredCharge> {
    let subject = format!("charges/{}", charge.charge.id);
    match answer {
        RefundAnswer::Refunded { .. } => Outcome::Done(charge.clone()),
        RefundAnswer::Refused { code, refusal, .. } => Outcome::Failed(match refusal {
            RefundRefusal::Disputed => disputed(&charge.charge),
            RefundRefusal::FailedAtProvider => AppError::PaymentRefused {
                provider_code: code.clone(),
                provider_param: None,
                field: None,
                subject,
                message: format!(
                    "the payment provider failed the refund of {}; nothing was returned and the amount can be refunded again",
                    refund.amount
                ),
            },
            RefundRefusal::NotEnoughLeft => refused_for_lack_of_refundable(charge, refund),
            RefundRefusal::Provider { param, message } => AppError::PaymentRefused {
                provider_code: code.clone(),
                provider_param: param.clone(),
                field: param
                    .as_deref()
                    .filter(|param| *param == "amount")
                    .map(|_| "amount.amount_minor".to_owned()),
                subject,
                message: message.clone(),
            },
        }),
    }
}

/// What a refund already settled answers to a retry that finds it so (its key's answer was
/// not stored: the completer settled it).
pub(super) fn settled_refund_answer(refund: &StoredRefund) -> RefundAnswer {
    match (refund.status, refund.failure_code.as_deref()) {
        (RefundStatus::Succeeded | RefundStatus::Pending, _) => RefundAnswer::Refunded {
            provider_refund_id: refund.provider_refund_id.clone().unwrap_or_default(),
        },
        (RefundStatus::Failed, code) => {
            let code = code.unwrap_or("refund_failed").to_owned();
            let refusal = match code.as_str() {
                "charge_disputed" => RefundRefusal::Disputed,
                "refund_failed" => RefundRefusal::FailedAtProvider,
                "charge_already_refunded" | "amount_too_large" => RefundRefusal::NotEnoughLeft,
                _ => RefundRefusal::Provider {
                    param: None,
                    message: format!("the payment provider refused the refund ({code})"),
                },
            };
            RefundAnswer::Refused {
                provider_refund_id: refund.provider_refund_id.clone(),
                code,
                refusal,
            }
        }
    }
}

/// What [`apply_refunded_at_provider`] did: the charge as it now stands, what it counted as
/// refunded before, and the transition's audit action when it changed.
pub(in crate::service) struct RefreshedCharge {
    pub(in crate::service) charge: StoredCharge,
    pub(in crate::service) before: Money,
    pub(in crate::service) action: Option<&'static str>,
}

/// Whether `refund` changed at or after `read_at` (PostgreSQL's clock, [`crate::db::now`],
/// taken before the provider was read): the provider's figures may not count it yet, so they are
/// stale for its charge. A refund settled before it was settled in a transaction that began after
/// the provider answered, so the reading counts it.
pub(in crate::service) fn changed_since(refund: &StoredRefund, read_at: DateTime<Utc>) -> bool {
    refund.updated_at >= read_at
}

/// What the provider counts as refunded of a charge, and when it was read.
pub(in crate::service) struct ProviderRefunded {
    pub(in crate::service) amount: Money,
    pub(in crate::service) read_at: DateTime<Utc>,
    /// The refund of ours whose refusal (too little left) made us read it: the provider did not
    /// count it, so its own change does not make the figure stale.
    pub(in crate::service) asked_by: Option<RefundId>,
}

/// Sets the charge's refunded amount to the provider's figure (refunds made in its dashboard, or
/// one that failed there), as a webhook event would, while none of our own refunds of it is in
/// flight or changed since the figure was read (it may not count that one yet: a reconciliation
/// run that read the provider before one of our refunds was made there must not take it back),
/// and the charge itself has not changed since (a newer figure may have been written meanwhile);
/// the audit row names the reconciliation run that found it, if one did.
pub(in crate::service) async fn apply_refunded_at_provider(
    conn: &mut AsyncPgConnection,
    (account_id, charge_id): (AccountId, ChargeId),
    provider: &ProviderRefunded,
    actor: Option<Actor>,
    reconciliation_run: Option<Uuid>,
) -> AppResult<RefreshedCharge> {
    let amount_refunded = provider.amount;
    let locked = ChargeRow::lock(conn, account_id, charge_id)
        .await?
        .ok_or_else(|| gone("charge", charge_id.as_uuid()))?;
    let before = locked.charge.amount_refunded;
    let unchanged = |charge| RefreshedCharge {
        charge,
        before,
        action: None,
    };
    let in_flight = RefundRow::list_for_charge(conn, account_id, charge_id)
        .await?
        .iter()
        .any(|other| {
            other.status == RefundStatus::Pending
                || (Some(other.id) != provider.asked_by && changed_since(other, provider.read_at))
        });
    // Changed since the reading: whatever changed it may have known a later figure (another
    // worker's reading, a newer event's), which this older one must not take back.
    let changed_since_read = locked.updated_at >= provider.read_at;
    if in_flight || changed_since_read || amount_refunded == before {
        return Ok(unchanged(locked));
    }
    match locked
        .charge
        .apply(&ChargeEvent::RefundedAtProvider { amount_refunded })
    {
        Ok(decision) => {
            let saved = ChargeRow::save(conn, &decision.after).await?;
            let (actor_user_id, actor_api_key_id) =
                actor.map(actor_columns).unwrap_or((None, None));
            NewChargeActivity {
                id: Uuid::now_v7(),
                account_id: account_id.as_uuid(),
                charge_id: charge_id.as_uuid(),
                actor_user_id,
                actor_api_key_id,
                action: decision.action,
                changes: json!({
                    "source": if reconciliation_run.is_some() { "reconciliation" } else { "provider" },
                    "amount_refunded_minor": {"old": before.amount_minor(), "new": amount_refunded.amount_minor()},
                }),
                webhook_event_id: None,
                reconciliation_run_id: reconciliation_run,
            }
            .insert(conn)
            .await?;
            Ok(RefreshedCharge {
                charge: saved,
                before,
                action: Some(decision.action),
            })
        }
        Err(violation) => {
            tracing::warn!(charge_id = %locked.charge.id, %violation,
                "the provider's refunded amount does not fit the charge");
            Ok(unchanged(locked))
        }
    }
}

/// The answer of a refund the provider refused for lack of refundable amount, from the charge
/// as refreshed: what the domain says of the same refund now.
pub(super) fn refused_for_lack_of_refundable(
    charge: &StoredCharge,
    refund: &StoredRefund,
) -> AppError {
    match charge.charge.apply(&ChargeEvent::RefundReserved {
        amount: refund.amount,
    }) {
        Err(violation) => refusal(&charge.charge, &violation),
        // The provider still counts more refunded than the service can see: say so as it did.
        Ok(_) => AppError::FailedPrecondition {
            reason: Reason::RefundExceedsCharge,
            message: format!(
                "the payment provider has less than {} left to refund of this charge",
                refund.amount
            ),
            violations: vec![PreconditionViolation {
                kind: "CHARGE_REFUNDABLE_AMOUNT".to_owned(),
                subject: format!("charges/{}", charge.charge.id),
                description: "refunded at the payment provider beyond what this service recorded"
                    .to_owned(),
            }],
        },
    }
}

impl Billing {
    /// Refunds `amount` of a charge (all that is left with `None`). Agents, admins and API keys
    /// only. The amount is reserved on the locked charge before the provider is asked, so
    /// concurrent refunds never add up to more than the charge: those that do not fit are
    /// FAILED_PRECONDITION `REFUND_EXCEEDS_CHARGE`; a disputed charge is `CHARGE_DISPUTED`.
    pub async fn refund_charge(
        &self,
        write: &KeyedWrite<'_, StoredCharge>,
        charge_id: ChargeId,
        amount: Option<Money>,
    ) -> AppResult<Outcome<StoredCharge>> {
        let caller = write.caller()?;
        let deadline = write.scope.deadline();
        let idempotent = write.idempotent();
        caller.require(Role::Agent)?;
        let actor = caller.actor();
        let account_id = caller.account_id;
        let mut place = None;
        let mut connection = crate::db::connection(&self.pool).await?;
        let recorded: AppResult<_> = db::transaction(
            &mut connection,
            claiming_limits(remaining(deadline)?, idempotent),
            async |conn| {
                let key = match claim_for_phase_one(conn, idempotent).await? {
                    Ok(key) => key,
                    Err(known) => return Ok(known),
                };
                self.ensure_provider_accepts_calls()?;
                place = Some(self.enter_bulkhead()?);
                let reserved: AppResult<_> = db::savepoint(&mut *conn, async |conn| {
                    reserve_refund(conn, account_id, actor, charge_id, amount).await
                })
                .await;
                let reserved = reserved.map(|refund| refund.id.as_uuid());
                close_phase_one(conn, key, REFUND_CREATED, reserved).await
            },
        )
        .await;
        let recorded = recorded?;
        drop(connection);
        let (key, resource) = match recorded {
            Recorded::Replay(stored) => return Ok(Outcome::Replay(stored)),
            Recorded::Refused(error) => return Ok(Outcome::Failed(error)),
            Recorded::Resume { key, resource } => (key, resource),
        };
        self.send_refund(
            account_id,
            RefundId::from_uuid(resource),
            (deadline, place),
            actor,
            key,
        )
        .await
    }

    /// Phases 2 and 3 of a refund on the request path, as [`Self::send_charge`].
    pub(super) async fn send_refund(
        &self,
        account_id: AccountId,
        refund_id: RefundId,
        (deadline, place): (Instant, Option<BulkheadPlace>),
        actor: Actor,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<Outcome<StoredCharge>> {
        let lease_for = remaining(deadline)? + LEASE_MARGIN;
        let lease = {
            let mut connection = crate::db::connection(&self.pool).await?;
            send_lease::claim(
                &mut connection,
                Leased::Refunds,
                account_id.as_uuid(),
                refund_id.as_uuid(),
                lease_for,
            )
            .await?
        };
        let (refund, charge) = self.read_refund(account_id, refund_id).await?;
        let Some(lease) = lease else {
            if refund.status == RefundStatus::Pending {
                return Err(AppError::idempotency_key_in_use());
            }
            let answer = settled_refund_answer(&refund);
            return self
                .record_refund(&refund, answer, deadline, Some(actor), key)
                .await;
        };
        let _place = match place {
            Some(place) => place,
            None => match self.enter_bulkhead() {
                Ok(place) => place,
                Err(busy) => {
                    self.give_back(Leased::Refunds, lease, &busy.to_string())
                        .await?;
                    return Err(busy);
                }
            },
        };
        let key_kept = key_kept(lease.age, self.provider.key_retention());
        match self
            .answer_pending_refund(&refund, &charge, call_deadline(deadline), key_kept)
            .await
        {
            Ok(answer) => {
                self.record_refund(&refund, answer, deadline, Some(actor), key)
                    .await
            }
            Err(unsettling) => {
                self.give_back(Leased::Refunds, lease, &unsettling.detail)
                    .await?;
                Err(unsettling.answer)
            }
        }
    }

    pub(super) async fn read_refund(
        &self,
        account_id: AccountId,
        refund_id: RefundId,
    ) -> AppResult<(StoredRefund, StoredCharge)> {
        let mut connection = crate::db::connection(&self.pool).await?;
        let refund = RefundRow::find(&mut connection, account_id, refund_id)
            .await?
            .ok_or_else(|| gone("refund", refund_id.as_uuid()))?;
        let charge = ChargeRow::find(&mut connection, account_id, None, refund.charge_id)
            .await?
            .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?;
        Ok((refund, charge))
    }

    /// The provider's answer to a pending refund. Unless the provider surely still keeps its key
    /// (`key_kept`, judged from the lease's age: [`key_kept`]), the refund it made under the key
    /// (whose answer was lost, or a saved 5xx replayed until now) is looked for before anything
    /// is sent; otherwise, or when it made none, it is asked for.
    pub(super) async fn answer_pending_refund(
        &self,
        refund: &StoredRefund,
        charge: &StoredCharge,
        deadline: Instant,
        key_kept: bool,
    ) -> Result<RefundAnswer, Unsettling> {
        let made = if key_kept {
            None
        } else {
            self.find_refund_at_provider(refund, deadline).await?
        };
        match made {
            Some(made) => Ok(answer_for_refund(made)),
            None => self.ask_for_refund(refund, charge, deadline).await,
        }
    }

    /// The refund the provider made for `refund`, if it made one: among its refunds created
    /// since shortly before ours was recorded, the one whose metadata names ours. How a refund
    /// pending past the provider's key retention is settled: sent again under a key the provider
    /// has forgotten, a refund it made would be made twice.
    pub(super) async fn find_refund_at_provider(
        &self,
        refund: &StoredRefund,
        deadline: Instant,
    ) -> Result<Option<crate::providers::payments::Refund>, Unsettling> {
        let ours = reference(refund.id.as_uuid()).map_err(unsettling_from)?;
        let margin = chrono::Duration::minutes(5);
        let period = crate::providers::payments::LedgerPeriod {
            from: refund.created_at - margin,
            until: Utc::now() + margin,
        };
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .provider
                .list_refunds(&period, cursor.as_deref(), deadline)
                .await
                .map_err(Unsettling::from_provider)?;
            if let Some(made) = page
                .items
                .into_iter()
                .find(|made| made.refund_id.as_deref() == Some(ours.as_str()))
            {
                return Ok(Some(made));
            }
            cursor = page.next;
            if cursor.is_none() {
                return Ok(None);
            }
        }
    }

    /// Sends a pending refund with its derived key; what the provider answered.
    pub(super) async fn ask_for_refund(
        &self,
        refund: &StoredRefund,
        charge: &StoredCharge,
        deadline: Instant,
    ) -> Result<RefundAnswer, Unsettling> {
        let payment_id = charge.charge.provider_payment_id.clone().ok_or_else(|| {
            unsettling_from(AppError::internal(anyhow::anyhow!(
                "a refunded charge has no payment id"
            )))
        })?;
        let request = CreateRefund::new(
            reference(refund.id.as_uuid()).map_err(unsettling_from)?,
            payment_id,
            Some(refund.amount),
        )
        .map_err(|problem| unsettling_from(AppError::internal(anyhow::anyhow!("{problem}"))))?;
        match self.provider.create_refund(&request, deadline).await {
            Ok(made) => Ok(answer_for_refund(made)),
            Err(ProviderError::InvalidRequest {
                status,
                code,
                param,
                message,
            }) if is_refusal(status) => {
                let refusal = match code.as_str() {
                    "charge_disputed" => RefundRefusal::Disputed,
                    "charge_already_refunded" | "amount_too_large" => RefundRefusal::NotEnoughLeft,
                    _ => RefundRefusal::Provider { param, message },
                };
                Ok(RefundAnswer::Refused {
                    provider_refund_id: None,
                    code: refusal_code(code),
                    refusal,
                })
            }
            Err(ProviderError::Declined { code, message, .. }) => Ok(RefundAnswer::Refused {
                provider_refund_id: None,
                code: code.clone(),
                refusal: RefundRefusal::Provider {
                    param: None,
                    message,
                },
            }),
            Err(error) => Err(Unsettling::from_provider(error)),
        }
    }

    /// Phase 3 of a refund: records the provider's answer over the refund if it is still
    /// pending (a refused one releases its amount on the charge), refreshes the charge from the
    /// provider when the provider knows of refunds the service does not, and stores the
    /// request's answer on its key.
    pub(super) async fn record_refund(
        &self,
        refund: &StoredRefund,
        answer: RefundAnswer,
        deadline: Instant,
        actor: Option<Actor>,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<Outcome<StoredCharge>> {
        let refresh = matches!(
            answer,
            RefundAnswer::Refused {
                refusal: RefundRefusal::NotEnoughLeft,
                ..
            }
        );
        let mut connection = crate::db::connection(&self.pool).await?;
        let limits = Limits::within(RECORD_BUDGET).waiting_for_locks_at_most(RECORD_LOCK_WAIT);
        let recorded: AppResult<_> = db::transaction(&mut connection, limits, async |conn| {
            let locked = RefundRow::lock(conn, refund.account_id, refund.id)
                .await?
                .ok_or_else(|| gone("refund", refund.id.as_uuid()))?;
            let charge = if locked.status == RefundStatus::Pending {
                finish_refund(conn, &locked, &answer, actor, &self.message_domain).await?
            } else {
                ChargeRow::find(conn, refund.account_id, None, refund.charge_id)
                    .await?
                    .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?
            };
            let outcome = refund_outcome(&charge, refund, &answer);
            // The answer of a refund that found too little left waits for the refresh below.
            if !refresh && let Some((idempotent, id)) = key {
                match &outcome {
                    Outcome::Done(charge) => idempotent.succeeded(conn, id, charge).await?,
                    Outcome::Failed(error) => idempotent.failed(conn, id, error).await?,
                    Outcome::Replay(_) => {}
                }
            }
            Ok(outcome)
        })
        .await;
        let recorded = recorded?;
        drop(connection);
        if !refresh {
            return Ok(recorded);
        }
        let read_at = crate::db::now(&self.pool).await?;
        let refreshed = self.refresh_refunded(refund, deadline).await;
        let mut connection = crate::db::connection(&self.pool).await?;
        db::transaction(&mut connection, limits, async |conn| {
            let charge = match refreshed {
                Some(amount) => {
                    apply_refunded_at_provider(
                        conn,
                        (refund.account_id, refund.charge_id),
                        &ProviderRefunded {
                            amount,
                            read_at,
                            asked_by: Some(refund.id),
                        },
                        actor,
                        None,
                    )
                    .await?
                    .charge
                }
                None => ChargeRow::find(conn, refund.account_id, None, refund.charge_id)
                    .await?
                    .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?,
            };
            let error = refused_for_lack_of_refundable(&charge, refund);
            if let Some((idempotent, id)) = key {
                idempotent.failed(conn, id, &error).await?;
            }
            Ok(Outcome::Failed(error))
        })
        .await
    }

    /// What the provider counts as refunded of the refund's charge, read back; `None` when the
    /// provider cannot say now (the answer then follows from what the service knows).
    pub(super) async fn refresh_refunded(
        &self,
        refund: &StoredRefund,
        deadline: Instant,
    ) -> Option<Money> {
        let payment_id = {
            let mut connection = crate::db::connection(&self.pool).await.ok()?;
            ChargeRow::find(&mut connection, refund.account_id, None, refund.charge_id)
                .await
                .ok()??
                .charge
                .provider_payment_id?
        };
        let deadline = deadline.max(Instant::now() + RECORD_BUDGET);
        match self.provider.get_payment(&payment_id, deadline).await {
            Ok(payment) => payment.amount_refunded,
            Err(error) => {
                tracing::warn!(%payment_id, %error, "could not refresh a charge from the provider");
                None
            }
        }
    }
}

/// What a refund the provider made says of ours.
pub(super) fn answer_for_refund(made: crate::providers::payments::Refund) -> RefundAnswer {
    match made.status {
        crate::providers::payments::RefundStatus::Succeeded
        | crate::providers::payments::RefundStatus::Pending
        | crate::providers::payments::RefundStatus::RequiresAction => RefundAnswer::Refunded {
            provider_refund_id: made.id,
        },
        crate::providers::payments::RefundStatus::Failed
        | crate::providers::payments::RefundStatus::Canceled => RefundAnswer::Refused {
            provider_refund_id: Some(made.id),
            code: "refund_failed".to_owned(),
            refusal: RefundRefusal::FailedAtProvider,
        },
    }
}
