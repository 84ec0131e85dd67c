//! CreateCharge: the request's checks, its three phases, and settling a pending charge from the
//! provider's answer (shared with the completer and reconciliation).

use super::*;

/// Stripe's documented ceiling of an amount: eight digits in the currency's smallest unit
/// (99,999,999: $999,999.99, ¥99,999,999) for every currency billing supports.
pub(super) const PROVIDER_MAX_AMOUNT_MINOR: i64 = 99_999_999;

/// A charge to make, as the API parsed it.
#[derive(Clone, Debug)]
pub struct NewChargeRequest {
    pub customer_id: UserId,
    pub ticket_id: Option<TicketId>,
    pub amount: Money,
    /// The provider's payment method id (`pm_card_visa` in test mode).
    pub payment_method: String,
}

/// What the provider documents it refuses, checked before anything is recorded or sent; every
/// refused field named at once.
pub(super) fn check_within_provider_limits(request: &NewChargeRequest) -> AppResult<()> {
    let amount = request.amount;
    let mut violations = FieldViolations::new();
    if amount.amount_minor() > PROVIDER_MAX_AMOUNT_MINOR {
        violations.add(
            "charge.amount.amount_minor",
            &InvalidValue::new(format!(
                "must be at most {PROVIDER_MAX_AMOUNT_MINOR} (the payment provider's maximum, {})",
                Money::new(PROVIDER_MAX_AMOUNT_MINOR, amount.currency())
                    .map_or_else(|_| String::new(), |most| most.to_string())
            )),
        );
    } else if amount.currency().exponent() == 3 && amount.amount_minor() % 10 != 0 {
        // Stripe takes three-decimal currencies (KWD, BHD, ...) in whole hundredths only.
        violations.add(
            "charge.amount.amount_minor",
            &InvalidValue::new(format!(
                "must be a multiple of 10 in {}: the payment provider takes three-decimal currencies in hundredths",
                amount.currency()
            )),
        );
    }
    if !is_payment_method_id(&request.payment_method) {
        violations.add(
            "charge.payment_method",
            &InvalidValue::new(
                "must be a payment method id: pm_ followed by letters, digits and underscores",
            ),
        );
    }
    violations.into_result()
}

/// The shape of the provider's payment method ids (`pm_card_visa`, `pm_1Nx...`).
pub(super) fn is_payment_method_id(raw: &str) -> bool {
    raw.strip_prefix("pm_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 250
            && rest
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    })
}

/// Checks a new charge against the account and inserts it pending, with its audit record.
pub(super) async fn insert_pending_charge(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    actor: Actor,
    request: &NewChargeRequest,
) -> AppResult<StoredCharge> {
    let account_id = caller.account_id;
    UserRow::find_in_account(conn, account_id.as_uuid(), request.customer_id.as_uuid())
        .await?
        .ok_or_else(|| AppError::not_found(Resource::User, request.customer_id))?;
    if let Some(ticket_id) = request.ticket_id {
        crate::db::models::TicketRow::find(conn, account_id, None, ticket_id)
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Ticket, ticket_id))?;
    }
    let charge = NewCharge {
        id: ChargeId::generate().as_uuid(),
        account_id: account_id.as_uuid(),
        customer_id: request.customer_id.as_uuid(),
        ticket_id: request.ticket_id.map(|id| id.as_uuid()),
        amount_minor: request.amount.amount_minor(),
        currency: request.amount.currency().code(),
        payment_method: &request.payment_method,
        status: ChargeStatus::Pending.as_str(),
    }
    .insert(conn)
    .await?;
    record(
        conn,
        &charge.charge,
        Some(actor),
        "created",
        json!({"amount_minor": charge.charge.amount.amount_minor(), "currency": charge.charge.amount.currency().code()}),
    )
    .await?;
    Ok(charge)
}

impl Billing {
    /// Charges a customer of the caller's account. Agents, admins and API keys only; the
    /// customer must be a user of the account, the ticket a ticket of it. The outcome is the
    /// succeeded charge; `Failed` with CARD_DECLINED, PAYMENT_REFUSED or REFUSED_BY_PROVIDER
    /// when the provider declined or refused it (the charge is kept, FAILED); or the error
    /// PAYMENT_PROVIDER_UNAVAILABLE while the outcome is not known (the charge stays pending for
    /// a retry with the same key or for the completer).
    pub async fn create_charge(
        &self,
        write: &KeyedWrite<'_, StoredCharge>,
        request: NewChargeRequest,
    ) -> AppResult<Outcome<StoredCharge>> {
        let caller = write.caller()?;
        let deadline = write.scope.deadline();
        let idempotent = write.idempotent();
        caller.require(Role::Agent)?;
        check_within_provider_limits(&request)?;
        let actor = caller.actor();
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
                // An open breaker or a full bulkhead refuses at once and records nothing (the
                // claim rolls back with this transaction): no pending charge left behind.
                self.ensure_provider_accepts_calls()?;
                place = Some(self.enter_bulkhead()?);
                // A savepoint: a refused request undoes its work but keeps the claim, to store
                // the refusal for retries.
                let inserted: AppResult<_> = db::savepoint(&mut *conn, async |conn| {
                    insert_pending_charge(conn, caller, actor, &request).await
                })
                .await;
                let inserted = inserted.map(|charge| charge.charge.id.as_uuid());
                close_phase_one(conn, key, CHARGE_CREATED, inserted).await
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
        let charge = self
            .send_charge(
                caller.account_id,
                ChargeId::from_uuid(resource),
                (deadline, place),
                actor,
                key,
            )
            .await?;
        Ok(outcome_of(charge))
    }

    /// Phases 2 and 3 of a charge on the request path: take its send lease, send it, record
    /// the outcome and the key's answer. A charge already final is only answered; one whose
    /// lease another holds is IDEMPOTENCY_KEY_IN_USE.
    pub(super) async fn send_charge(
        &self,
        account_id: AccountId,
        charge_id: ChargeId,
        (deadline, place): (Instant, Option<BulkheadPlace>),
        actor: Actor,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<StoredCharge> {
        let lease_for = remaining(deadline)? + LEASE_MARGIN;
        let (lease, stored) = {
            let mut connection = crate::db::connection(&self.pool).await?;
            let lease = send_lease::claim(
                &mut connection,
                Leased::Charges,
                account_id.as_uuid(),
                charge_id.as_uuid(),
                lease_for,
            )
            .await?;
            let stored = ChargeRow::find(&mut connection, account_id, None, charge_id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Charge, charge_id))?;
            (lease, stored)
        };
        let Some(lease) = lease else {
            if stored.charge.status == ChargeStatus::Pending {
                return Err(AppError::idempotency_key_in_use());
            }
            // Settled meanwhile (the completer, a retry): answer it, and store the answer.
            return self.record_charge(&stored, None, None, key).await;
        };
        // A request resuming its key takes its place now, after the lease: a retry that finds
        // the charge busy or settled needs none.
        let _place = match place {
            Some(place) => place,
            None => match self.enter_bulkhead() {
                Ok(place) => place,
                Err(busy) => {
                    self.give_back(Leased::Charges, lease, &busy.to_string())
                        .await?;
                    return Err(busy);
                }
            },
        };
        let sent = self
            .resolve_payment(
                &stored,
                call_deadline(deadline),
                self.resolution_for_request(lease.age),
            )
            .await;
        match sent {
            Ok(event) => {
                self.record_charge(&stored, Some(&event), Some(actor), key)
                    .await
            }
            Err(unsettling) => {
                self.give_back(Leased::Charges, lease, &unsettling.detail)
                    .await?;
                Err(unsettling.answer)
            }
        }
    }

    /// How a client's request sends a pending charge `age` old (PostgreSQL's clock): at once
    /// while the provider surely still keeps its key (it replays a payment it made); past that,
    /// a retry looks for the payment first, as the completer does, and a charge the provider
    /// does not have is abandoned rather than sent under a forgotten key.
    fn resolution_for_request(&self, age: Duration) -> Resolution {
        if key_kept(age, self.provider.key_retention()) {
            Resolution::Send
        } else {
            Resolution::LookUpThenSend { key_kept: false }
        }
    }

    pub(super) async fn read_charge(
        &self,
        account_id: AccountId,
        charge_id: ChargeId,
    ) -> AppResult<StoredCharge> {
        let mut connection = crate::db::connection(&self.pool).await?;
        ChargeRow::find(&mut connection, account_id, None, charge_id)
            .await?
            .ok_or_else(|| gone("charge", charge_id.as_uuid()))
    }

    /// Phase 3 of a charge: applies `event` to the charge if it is still pending (someone may
    /// have settled it meanwhile: then it is only answered), with its audit record, and stores
    /// the answer on the request's key.
    pub(super) async fn record_charge(
        &self,
        sent: &StoredCharge,
        event: Option<&ChargeEvent>,
        actor: Option<Actor>,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<StoredCharge> {
        let charge = &sent.charge;
        let mut connection = crate::db::connection(&self.pool).await?;
        let limits = Limits::within(RECORD_BUDGET).waiting_for_locks_at_most(RECORD_LOCK_WAIT);
        db::transaction(&mut connection, limits, async |conn| {
            let locked = ChargeRow::lock(conn, charge.account_id, charge.id)
                .await?
                .ok_or_else(|| gone("charge", charge.id.as_uuid()))?;
            let finished = if let (ChargeStatus::Pending, Some(event)) =
                (locked.charge.status, event)
            {
                let decision = locked
                    .charge
                    .apply(event)
                    .map_err(|violation| AppError::internal(anyhow::anyhow!(violation)))?;
                let saved = ChargeRow::save(conn, &decision.after).await?;
                super::receipt_if_paid_now(
                    conn,
                    locked.charge.status,
                    &saved.charge,
                    &self.message_domain,
                )
                .await?;
                record(
                    conn,
                    &saved.charge,
                    actor,
                    decision.action,
                    json!({"status": {"old": locked.charge.status.as_str(), "new": saved.charge.status.as_str()}}),
                )
                .await?;
                saved
            } else {
                locked
            };
            if let Some((idempotent, id)) = key {
                match answer_for_charge(&finished.charge) {
                    Ok(()) if finished.charge.status == ChargeStatus::Pending => {}
                    Ok(()) => idempotent.succeeded(conn, id, &finished).await?,
                    Err(error) => idempotent.failed(conn, id, &error).await?,
                }
            }
            Ok(finished)
        }).await
    }

    /// What the provider says of a pending charge, as the event that settles it; provider
    /// trouble settles nothing.
    pub(in crate::service) async fn resolve_payment(
        &self,
        stored: &StoredCharge,
        deadline: Instant,
        resolution: Resolution,
    ) -> Result<ChargeEvent, Unsettling> {
        let charge = &stored.charge;
        let reference = reference(charge.id.as_uuid()).map_err(unsettling_from)?;
        if let Resolution::LookUpThenSend { .. } | Resolution::LookUpOnly { .. } = resolution {
            let found = self
                .provider
                .find_payments_by_charge_id(&reference, deadline)
                .await
                .map_err(Unsettling::from_provider)?;
            if found.len() > 1 {
                tracing::error!(charge_id = %charge.id, payments = found.len(),
                    "the provider holds more than one payment for one charge");
            }
            if let Some(payment) = found.into_iter().next() {
                let payment = self
                    .provider
                    .get_payment(&payment.id, deadline)
                    .await
                    .map_err(Unsettling::from_provider)?;
                return event_for_payment(&payment).map_err(unsettling_from);
            }
            let (give_up, may_send) = match resolution {
                Resolution::LookUpThenSend { key_kept } => (!key_kept, true),
                Resolution::LookUpOnly { key_kept } => (!key_kept, false),
                Resolution::Send => (false, true),
            };
            if give_up {
                // The provider has no payment and may have forgotten the key: sending now could
                // make a second payment if the first is merely late. Nothing was charged.
                return Ok(ChargeEvent::Abandoned {
                    reason: "not_at_provider".to_owned(),
                });
            }
            if !may_send {
                return Err(Unsettling {
                    answer: AppError::internal(anyhow::anyhow!(NOT_FOUND_YET)),
                    detail: NOT_FOUND_YET.to_owned(),
                });
            }
        }
        let payment = CreatePayment::new(
            reference,
            charge.amount,
            charge.customer_id.to_string(),
            charge.payment_method.clone(),
            BTreeMap::from([("account_id".to_owned(), charge.account_id.to_string())]),
        )
        .map_err(|problem| unsettling_from(AppError::internal(anyhow::anyhow!("{problem}"))))?;
        match self.provider.create_payment(&payment, deadline).await {
            Ok(payment) => event_for_payment(&payment).map_err(unsettling_from),
            Err(ProviderError::Declined {
                code,
                decline_code,
                payment_id,
                ..
            }) => Ok(ChargeEvent::Failed {
                provider_payment_id: payment_id,
                code,
                decline_code,
            }),
            Err(ProviderError::InvalidRequest {
                status,
                code,
                param,
                ..
            }) if is_refusal(status) => {
                tracing::info!(charge_id = %charge.id, %code, ?param,
                    "the provider refused the charge");
                Ok(ChargeEvent::Refused {
                    code: refusal_code(code),
                    param,
                })
            }
            Err(error) => Err(Unsettling::from_provider(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_method_ids_have_the_providers_shape() {
        for good in [
            "pm_card_visa",
            "pm_1NxQb2",
            "pm_card_chargeDeclinedExpiredCard",
        ] {
            assert!(is_payment_method_id(good), "{good} refused");
        }
        for bad in [
            "",
            "pm_",
            "card_visa",
            "pm_card visa",
            "pm_card-visa",
            "pm_é",
        ] {
            assert!(!is_payment_method_id(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_charge_over_the_providers_limits_names_every_field_at_once() {
        let request = NewChargeRequest {
            customer_id: UserId::from_uuid(Uuid::from_u128(1)),
            ticket_id: None,
            amount: Money::parse(PROVIDER_MAX_AMOUNT_MINOR + 1, "USD").expect("an amount"),
            payment_method: "card_visa".to_owned(),
        };
        let Err(AppError::InvalidArgument(violations)) = check_within_provider_limits(&request)
        else {
            panic!("refused as INVALID_ARGUMENT");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["charge.amount.amount_minor", "charge.payment_method"]
        );
    }
}
