//! One module per command: parse → core call → render. No logic beyond that.

pub mod backup;
pub mod cat;
pub mod check;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod generate;
pub mod init;
pub mod key;
pub mod ls;
pub mod mirror;
pub mod mount;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod select;
pub mod snapshots;
pub mod stats;
