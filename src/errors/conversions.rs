//! Failures of the libraries every layer uses, classified once (the module's policy): a lost or
//! unreachable PostgreSQL or Redis is UNAVAILABLE, a statement cut short by the request's deadline
//! is DEADLINE_EXCEEDED, a lock not granted within a transaction's lock wait is ABORTED
//! IDEMPOTENCY_KEY_IN_USE, a transaction PostgreSQL rolled back to end a deadlock or a
//! serialization failure is ABORTED TRANSACTION_CONFLICT, anything unexpected is INTERNAL.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError;

use super::{AppError, Dependency};

/// Database errors classified once: see the module's policy.
impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                    Self::Unavailable {
                        dependency: Dependency::Database,
                        source: error.into(),
                    }
                }
                // SQLSTATE 57014 has no kind of its own in diesel; its message is fixed by
                // PostgreSQL and is what a `SET LOCAL statement_timeout` produces.
                DatabaseErrorKind::Unknown
                    if info
                        .message()
                        .contains("canceling statement due to statement timeout") =>
                {
                    Self::DeadlineExceeded
                }
                // SQLSTATE 55P03, likewise: only the transactions that claim an idempotency key or
                // lock a charge or refund (keyed requests; the webhook and reconciliation workers,
                // which retry) set a `lock_timeout` (`Limits::waiting_for_locks_at_most`), so a
                // lock they wait for past it, on any row, is held by other work on the same key or
                // charge: retry shortly, with the same key. (Found by the faults-together test
                // under load: a charge's record phase waiting on a row its own retry held
                // answered INTERNAL.)
                DatabaseErrorKind::Unknown
                    if info
                        .message()
                        .contains("canceling statement due to lock timeout") =>
                {
                    Self::idempotency_key_in_use()
                }
                // SQLSTATE 40001 and 40P01 (the latter, again, has no kind in diesel): PostgreSQL
                // chose this transaction to end a conflict with another and rolled it back, so
                // the request is safe to send again, and a client that retries ABORTED does.
                DatabaseErrorKind::SerializationFailure => Self::TransactionConflict(error.into()),
                DatabaseErrorKind::Unknown if info.message().contains("deadlock detected") => {
                    Self::TransactionConflict(error.into())
                }
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::ReadOnlyTransaction
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::ExclusionViolation
                | DatabaseErrorKind::Unknown
                | _ => Self::Internal(error.into()),
            },
            DieselError::BrokenTransactionManager => Self::Unavailable {
                dependency: Dependency::Database,
                source: error.into(),
            },
            DieselError::NotFound
            | DieselError::InvalidCString(_)
            | DieselError::QueryBuilderError(_)
            | DieselError::DeserializationError(_)
            | DieselError::SerializationError(_)
            | DieselError::RollbackErrorOnCommit { .. }
            | DieselError::RollbackTransaction
            | DieselError::AlreadyInTransaction
            | DieselError::NotInTransaction
            | DieselError::IntegerConversion(_)
            // diesel's error is non-exhaustive: an unknown future variant is a bug until mapped.
            | _ => Self::Internal(error.into()),
        }
    }
}

/// A connection that cannot be had within the pool's short timeout means the database is down
/// or saturated: retryable, never a 30-second hang.
impl From<bb8::RunError<PoolError>> for AppError {
    fn from(error: bb8::RunError<PoolError>) -> Self {
        Self::Unavailable {
            dependency: Dependency::Database,
            source: anyhow::Error::new(error),
        }
    }
}

/// Redis failures: a connection that cannot be had, or one that broke, is UNAVAILABLE; anything
/// else (a script error, a wrong type) is a bug.
impl From<redis::RedisError> for AppError {
    fn from(error: redis::RedisError) -> Self {
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
        {
            Self::Unavailable {
                dependency: Dependency::Redis,
                source: error.into(),
            }
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<bb8::RunError<redis::RedisError>> for AppError {
    fn from(error: bb8::RunError<redis::RedisError>) -> Self {
        match error {
            bb8::RunError::User(error) => error.into(),
            bb8::RunError::TimedOut => Self::Unavailable {
                dependency: Dependency::Redis,
                source: anyhow::anyhow!("timed out waiting for a Redis connection"),
            },
        }
    }
}
