//! One module per command: parse → core call → render. No logic beyond that.

pub mod backup;
pub mod check;
pub mod init;
pub mod key;
pub mod restore;
pub mod select;
pub mod snapshots;
