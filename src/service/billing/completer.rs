//! The completer's side of billing: settling what is left pending, the next due first, each row
//! with its own attempts and backoff, at a bounded rate, marking for attention what it cannot
//! settle in time.

use tokio_util::sync::CancellationToken;

use super::*;

/// What the completer does.
#[derive(Clone, Debug)]
pub struct CompleterPolicy {
    /// A pending charge younger than this is left to the request that made it.
    pub min_age: Duration,
    /// How long the provider keeps idempotency keys: a charge older than this is never sent
    /// again (its key may be gone, and a second payment could follow).
    pub provider_key_retention: Duration,
    /// The deadline of each provider call the completer makes.
    pub call_timeout: Duration,
    /// At most this many charges and this many refunds per run.
    pub batch: usize,
    /// The first delay before a row the completer could not settle is tried again; it doubles
    /// with each attempt (with jitter) up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A row still unsettled this long after it was created is marked for an operator's
    /// attention (it keeps being tried at `backoff_max`).
    pub attention_after: Duration,
    /// At most this many rows are attempted a second (each attempt is one to three provider
    /// requests): the completer's share of the provider, whatever is pending.
    pub attempts_per_second: u32,
}

impl Default for CompleterPolicy {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(5),
            provider_key_retention: Duration::from_secs(24 * 60 * 60),
            call_timeout: Duration::from_secs(10),
            batch: 100,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(10 * 60),
            attention_after: Duration::from_secs(60 * 60),
            attempts_per_second: 10,
        }
    }
}

impl CompleterPolicy {
    /// When a row that failed its `attempts`-th attempt is due again: exponential, capped, with
    /// "equal jitter" (half fixed, half random), so rows that failed together spread out and
    /// none comes back at once.
    fn retry_in(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let cap = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.backoff_max);
        let half = cap / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// What one completer run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completed {
    /// Charges settled.
    pub charges: usize,
    /// Refunds settled.
    pub refunds: usize,
    /// Charges and refunds tried and left pending for a later attempt.
    pub postponed: usize,
}

impl Billing {
    /// Settles charges and refunds left pending for at least `policy.min_age` (a crash between
    /// the phases, an unknown provider outcome, a client that gave up): at most `policy.batch`
    /// of each, the one due longest first, at most `policy.attempts_per_second`. Instances share
    /// the work through send leases taken with `SKIP LOCKED`. One that cannot be settled now
    /// (the provider is down, the payment still processing) is due again after its backoff, and
    /// marked for attention once older than `policy.attention_after`.
    pub async fn complete_pending(&self, policy: &CompleterPolicy) -> AppResult<Completed> {
        self.complete_pending_until(policy, &CancellationToken::new())
            .await
    }

    /// [`Self::complete_pending`] until `stop` is cancelled: from then on it claims nothing
    /// more, and finishes only the row it holds (within `policy.call_timeout`, well inside the
    /// drain), so that a shutdown leaves no lease to run out and no attempt counted for a call
    /// never made.
    pub async fn complete_pending_until(
        &self,
        policy: &CompleterPolicy,
        stop: &CancellationToken,
    ) -> AppResult<Completed> {
        let mut completed = Completed::default();
        let pace = Duration::from_secs(1) / policy.attempts_per_second.max(1);
        let mut next_slot = Instant::now();
        // The run's start by PostgreSQL's clock, which writes `next_attempt_at`: its first claim's.
        let mut started = None;
        'tables: for table in [Leased::Charges, Leased::Refunds] {
            let mut attempted = 0;
            while attempted < policy.batch {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break 'tables,
                    () = tokio::time::sleep_until(next_slot) => {}
                }
                next_slot = Instant::now() + pace;
                let Some(lease) = self.claim_due(table, policy, started).await? else {
                    break;
                };
                started.get_or_insert(lease.claimed_at);
                attempted += 1;
                self.metrics.billing().completer_attempts.increment();
                let deadline = Instant::now() + policy.call_timeout;
                let settled = match table {
                    Leased::Charges => self.complete_charge(lease, deadline, policy).await,
                    Leased::Refunds => self.complete_refund(lease, deadline, policy).await,
                };
                match settled {
                    Ok(()) => match table {
                        Leased::Charges => completed.charges += 1,
                        Leased::Refunds => completed.refunds += 1,
                    },
                    Err(unsettling) => {
                        completed.postponed += 1;
                        tracing::warn!(id = %lease.id, table = ?table, error = %unsettling.detail,
                            "a pending charge or refund could not be settled yet");
                        self.postpone(table, lease, &unsettling.detail, policy)
                            .await?;
                    }
                }
            }
        }
        self.count_needing_attention().await?;
        Ok(completed)
    }

    pub(super) async fn claim_due(
        &self,
        table: Leased,
        policy: &CompleterPolicy,
        due_by: Option<DateTime<Utc>>,
    ) -> AppResult<Option<SendLease>> {
        let mut connection = crate::db::connection(&self.pool).await?;
        send_lease::claim_due(
            &mut connection,
            table,
            policy.min_age,
            policy.call_timeout + LEASE_MARGIN,
            due_by,
        )
        .await
    }

    /// Gives a lease the completer could not settle back, due again after its backoff, marked
    /// for attention (with an audit row and a count) once the row is old enough.
    pub(super) async fn postpone(
        &self,
        table: Leased,
        lease: SendLease,
        detail: &str,
        policy: &CompleterPolicy,
    ) -> AppResult<()> {
        let age = lease.age;
        let attention = (age >= policy.attention_after).then(|| {
            format!(
                "unsettled after {} attempts over {} s: {detail}",
                lease.attempts,
                age.as_secs()
            )
        });
        let unsettled = Unsettled {
            retry_in: policy.retry_in(lease.attempts),
            error: detail,
            attention: attention.as_deref(),
        };
        let mut connection = crate::db::connection(&self.pool).await?;
        let marked: AppResult<_> = db::transaction(
            &mut connection,
            Limits::within(RECORD_BUDGET),
            async |conn| {
                let marked = send_lease::release(conn, table, lease, &unsettled).await?;
                if marked {
                    let charge_id = match table {
                        Leased::Charges => lease.id,
                        Leased::Refunds => RefundRow::lock(
                            conn,
                            AccountId::from_uuid(lease.account_id),
                            RefundId::from_uuid(lease.id),
                        )
                        .await?
                        .ok_or_else(|| gone("refund", lease.id))?
                        .charge_id
                        .as_uuid(),
                    };
                    record_on(
                        conn,
                        lease.account_id,
                        charge_id,
                        None,
                        "needs_attention",
                        json!({
                            "subject": match table { Leased::Charges => "charge", Leased::Refunds => "refund" },
                            "id": lease.id.to_string(),
                            "reason": unsettled.attention,
                        }),
                        None,
                    )
                    .await?;
                }
                Ok(marked)
            }
        ).await;
        if marked? {
            self.metrics.billing().marked_for_attention.increment();
        }
        Ok(())
    }

    pub(super) async fn count_needing_attention(&self) -> AppResult<()> {
        let mut connection = crate::db::connection(&self.pool).await?;
        let count = ChargeRow::count_needing_attention(&mut connection).await?;
        self.metrics.billing().needing_attention.set(count);
        Ok(())
    }

    /// The completer's attempt at a pending charge it holds the lease of.
    pub(super) async fn complete_charge(
        &self,
        lease: SendLease,
        deadline: Instant,
        policy: &CompleterPolicy,
    ) -> Result<(), Unsettling> {
        let stored = self
            .read_charge(
                AccountId::from_uuid(lease.account_id),
                ChargeId::from_uuid(lease.id),
            )
            .await
            .map_err(unsettling_from)?;
        let _place = self
            .provider
            .bulkhead()
            .enter(deadline)
            .await
            .map_err(|full| Unsettling {
                detail: full.to_string(),
                answer: AppError::ProviderBusy {
                    provider: full.provider,
                    retry_after: full.retry_after,
                },
            })?;
        let event = self
            .resolve_payment(
                &stored,
                deadline,
                Resolution::LookUpThenSend {
                    key_kept: key_kept(lease.age, policy.provider_key_retention),
                },
            )
            .await?;
        self.record_charge(&stored, Some(&event), None, None)
            .await
            .map(drop)
            .map_err(unsettling_from)
    }

    /// The completer's attempt at a pending refund it holds the lease of.
    pub(super) async fn complete_refund(
        &self,
        lease: SendLease,
        deadline: Instant,
        policy: &CompleterPolicy,
    ) -> Result<(), Unsettling> {
        let account_id = AccountId::from_uuid(lease.account_id);
        let (refund, charge) = self
            .read_refund(account_id, RefundId::from_uuid(lease.id))
            .await
            .map_err(unsettling_from)?;
        let _place = self
            .provider
            .bulkhead()
            .enter(deadline)
            .await
            .map_err(|full| Unsettling {
                detail: full.to_string(),
                answer: AppError::ProviderBusy {
                    provider: full.provider,
                    retry_after: full.retry_after,
                },
            })?;
        let answer = self
            .answer_pending_refund(
                &refund,
                &charge,
                deadline,
                key_kept(lease.age, policy.provider_key_retention),
            )
            .await?;
        self.record_refund(&refund, answer, deadline, None, None)
            .await
            .map(drop)
            .map_err(unsettling_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_completer_backs_off_exponentially_within_its_cap_and_never_to_zero() {
        let policy = CompleterPolicy::default();
        for attempts in 1..40 {
            let cap = policy
                .backoff_base
                .saturating_mul(2u32.saturating_pow(u32::try_from(attempts - 1).unwrap().min(30)))
                .min(policy.backoff_max);
            let delay = policy.retry_in(attempts);
            assert!(
                delay >= cap / 2 && delay <= cap,
                "{attempts}: {delay:?} vs {cap:?}"
            );
        }
    }
}
