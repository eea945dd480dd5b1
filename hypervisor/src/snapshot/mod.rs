//! Snapshots of a guest (docs/snapshots.md): the file format ([`format`]); saving and restoring
//! are built on it.

pub mod file;
pub mod format;
