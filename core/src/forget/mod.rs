//! Retention (`cairn forget`): which snapshots a policy such as "the last 5, one per day
//! for a week, one per month for a year" keeps, and the reasons it keeps each one.
//!
//! Everything here is pure: snapshots, policy and the current time in, a decision out.
//! Removing the snapshot files is the caller's step ([`crate::repository::Repository::remove_snapshot`]),
//! so the decision can be shown (`--dry-run`) and tested without a repository.
//!
//! ```
//! use cairn_core::forget::{apply, Count, Policy};
//! # fn main() -> Result<(), cairn_core::forget::PolicyError> {
//! let policy = Policy { last: Count::N(2), ..Policy::default() };
//! let snaps: Vec<cairn_core::snapshot::Snapshot> = Vec::new();
//! let refs: Vec<_> = snaps.iter().collect();
//! let decision = apply(&refs, &policy, &chrono::Local::now())?;
//! assert!(decision.keep.is_empty() && decision.remove.is_empty());
//! # Ok(())
//! # }
//! ```

mod duration;
mod group;
mod policy;
#[cfg(test)]
mod tests;

pub use duration::Span;
pub use group::{group, GroupBy, GroupKey};
pub use policy::{apply, Bucket, Count, Counters, Decision, Kept, Policy, Reason, TagList};

/// A policy or grouping that cannot be used, as the user gave it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No `--keep-*` rule: applying it would remove every snapshot.
    #[error("no policy was given (no --keep-* option), so nothing would be kept; give a policy, or the ids of the snapshots to forget")]
    Empty,
    /// A count that is neither a number nor `unlimited`.
    #[error("invalid count {0:?}: give a number of snapshots or \"unlimited\"")]
    Count(String),
    /// A duration that is not like `1y2m3d4h`.
    #[error("invalid duration {input:?} ({reason}); durations look like 1y2m3d4h")]
    Span {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `--group-by` field that does not exist.
    #[error("unknown grouping option {0:?} (use host, paths and/or tags, comma-separated)")]
    GroupBy(String),
}
