//! Password hashing with argon2id at OWASP's parameters (19 MiB, 2 iterations, 1 lane). Hashing
//! runs on dedicated threads, one per core, so a login storm queues logins instead of stalling
//! every other RPC on the async runtime, and memory stays bounded: each thread's allocator keeps
//! the one 19 MiB block it reuses hash after hash, where tokio's blocking pool would spread the
//! work over ever new threads and glibc would keep a 19 MiB block in each of their arenas
//! (400 MiB of resident memory after a few hundred logins, measured with bench/run).

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, oneshot};

use crate::domain::Password;
use crate::errors::{AppError, AppResult};
use crate::telemetry::metrics::Metrics;

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    /// The hashing threads' queue; they end when the last clone of the hasher is dropped.
    jobs: Sender<Job>,
    /// A hash of a random password, verified against when there is no real hash to check, so
    /// that an unknown email costs as much time as a wrong password.
    decoy: Arc<OnceCell<String>>,
    /// Counts each verification once it has run (`supportdesk_password_verifications_total`).
    metrics: Metrics,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHasher {
    pub fn new(metrics: &Metrics) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..cores {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || run_jobs(&queue));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        Self {
            jobs,
            decoy: Arc::new(OnceCell::new()),
            metrics: metrics.clone(),
        }
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: &Password) -> AppResult<String> {
        let password = password.clone();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|error| AppError::internal(anyhow::anyhow!("argon2: {error}")))
        })
        .await
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown user, or one who never
    /// set a password) a decoy is checked instead and the answer is false: same work, same time.
    pub async fn verify(&self, password: &str, stored: Option<String>) -> AppResult<bool> {
        let decoy = self
            .decoy
            .get_or_try_init(|| async {
                let random = Password::parse(&uuid::Uuid::new_v4().to_string())
                    .expect("a UUID is a valid password");
                self.hash(&random).await
            })
            .await?
            .clone();
        let matches_real = stored.is_some();
        let hash = stored.unwrap_or(decoy);
        let password = password.to_owned();
        let metrics = self.metrics.clone();
        let verified = self
            .blocking(move || {
                let parsed = PasswordHash::new(&hash).map_err(|error| {
                    AppError::internal(anyhow::anyhow!("stored password hash: {error}"))
                })?;
                // argon2's verification compares in constant time.
                let verified = argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                let passwords = metrics.passwords();
                let against = if matches_real {
                    &passwords.verified_against_stored
                } else {
                    &passwords.verified_against_decoy
                };
                against.increment();
                Ok(verified)
            })
            .await?;
        Ok(verified && matches_real)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(work());
            }))
            .map_err(|_| AppError::internal(anyhow::anyhow!("the hashing threads are gone")))?;
        answered
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("hashing panicked")))?
    }
}

/// A hashing thread: runs jobs until the queue closes. A job that panics takes only its own
/// answer with it.
fn run_jobs(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return;
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

impl Default for PasswordHasher {
    /// A hasher whose counts nobody reads (the seed command's).
    fn default() -> Self {
        Self::new(&Metrics::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let hasher = PasswordHasher::default();
        let password = Password::parse("correct horse battery staple").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            hasher
                .verify("correct horse battery staple", Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse battery staple", Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn without_a_stored_hash_nothing_verifies() {
        let hasher = PasswordHasher::default();
        assert!(!hasher.verify("anything at all", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_missing_hash_costs_one_verification_against_a_decoy_hashed_like_a_real_one() {
        let metrics = Metrics::default();
        let hasher = PasswordHasher::new(&metrics);
        let real = hasher
            .hash(&Password::parse("correct horse battery staple").unwrap())
            .await
            .unwrap();

        assert!(
            !hasher
                .verify("a wrong password", Some(real.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("a wrong password", None).await.unwrap());

        let passwords = metrics.passwords();
        assert_eq!(passwords.verified_against_stored.get(), 1);
        assert_eq!(passwords.verified_against_decoy.get(), 1);
        let parameters = |phc: &str| phc.rsplitn(3, '$').nth(2).unwrap().to_owned();
        let decoy = hasher
            .decoy
            .get()
            .expect("made by the first check without a hash");
        assert_eq!(parameters(decoy), parameters(&real));
        assert_eq!(parameters(&real), "$argon2id$v=19$m=19456,t=2,p=1");
    }
}
