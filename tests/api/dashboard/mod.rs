//! DashboardService: the panels read the rollups the triggers keep in each change's own
//! transaction (checked against the rows they sum, in PostgreSQL), the audit feed merges both
//! trails page by page, and GetDashboard answers each panel with its own status — a panel held
//! on a lock is DEADLINE_EXCEEDED while the others answer.

mod degradation;
mod histograms;
mod panels;
mod replica;
