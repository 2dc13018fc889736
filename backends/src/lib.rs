//! cairn-backends: implementations of `cairn_core::backend::Backend`.
