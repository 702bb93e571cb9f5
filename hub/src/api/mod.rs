//! The REST API under `/hub/api`.

pub mod pagination;
