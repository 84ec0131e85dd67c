//! The data file `loadgen setup` writes and `loadgen run` reads: who can call (access tokens) and
//! which tickets exist and whose they are, so that every scenario asks for varied, real things as
//! a caller who may see them.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A logged-in user of the bench account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: String,
    pub email: String,
    pub access_token: String,
}

/// A ticket, and which customer raised it (`None`: it is only visible as the admin).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TicketRef {
    pub id: String,
    pub requester: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchData {
    pub account_slug: String,
    pub admin: Principal,
    pub customers: Vec<Principal>,
    pub tickets: Vec<TicketRef>,
    /// The search texts of the read-volume scenarios (`bench/run --read-volume` draws them;
    /// src/read_volume.rs asks them).
    #[serde(default)]
    pub searches: Vec<String>,
    /// The ids of the bench account's saved views (`bench/run --read-volume` writes them,
    /// bench/sql/read_volume_views.sql).
    #[serde(default)]
    pub views: Vec<String>,
}

impl BenchData {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the bench data {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parse the bench data {}", path.display()))
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec(self)?)
            .with_context(|| format!("write the bench data {}", path.display()))
    }

    /// The token that may read `ticket`: its requester's, or the admin's.
    pub fn token_for(&self, ticket: &TicketRef) -> &str {
        ticket
            .requester
            .and_then(|index| self.customers.get(index))
            .unwrap_or(&self.admin)
            .access_token
            .as_str()
    }

    /// The callers of caller-centred scenarios (ListTickets, GetCurrentUser): the customers, or
    /// the admin alone when there are none.
    pub fn callers(&self) -> Vec<&Principal> {
        if self.customers.is_empty() {
            vec![&self.admin]
        } else {
            self.customers.iter().collect()
        }
    }
}
