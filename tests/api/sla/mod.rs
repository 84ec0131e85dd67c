//! SLAs (issue 69): business hours (schedules) and the dry run of a due time; policies and the
//! clock on each ticket follow.

mod policies;
mod schedules;
