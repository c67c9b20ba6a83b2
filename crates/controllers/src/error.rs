//! The error of the controllers in this crate (node IPAM keeps its own, [`crate::nodeipam::Error`]).

/// Why a controller stopped. API errors never stop a controller: they are logged and the work is
/// retried with backoff; only a configuration that cannot work does.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A setting is out of range: fix the flags, retrying will not help.
    #[error("invalid {controller} configuration: {message}")]
    InvalidConfig {
        controller: &'static str,
        message: String,
    },
}
