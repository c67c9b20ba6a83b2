//! The node agent of k8rs (`k8rs agent`, and the node inside `k8rs server`): it joins the
//! cluster ([`bootstrap`]: a k3s-style token pins the server's CA, a CertificateSigningRequest
//! gets the node's client certificate), then runs the node's components as clients of the API
//! server.
//!
//! Must not depend on the API server or any store crate: everything goes through the API.

pub mod bootstrap;
pub mod dns;
pub mod node;

pub use bootstrap::{JoinConfig, bootstrap};
pub use node::{AgentConfig, run};

/// Everything that stops the agent, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the join token is unusable: {0}")]
    Token(#[source] k8rs_auth::Error),
    #[error("reaching the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the server at {url} presents a CA that does not match the join token: \
         check that the token comes from this server's <data-dir>/token"
    )]
    CaMismatch { url: String },
    #[error("the server refused the join token (401): check that the token is current")]
    TokenRefused,
    #[error("requesting the node certificate failed: {0}")]
    Csr(String),
    #[error("the node certificate request {name} was denied: {reason}")]
    CsrDenied { name: String, reason: String },
    #[error(
        "the node certificate request {name} was not signed within {secs} s: is the server's \
         certificate controller running?"
    )]
    CsrTimeout { name: String, secs: u64 },
    #[error("the container runtime: {0}")]
    Runtime(#[source] k8rs_runtime::Error),
    #[error("the pod network: {0}")]
    PodNet(#[source] k8rs_podnet::Error),
    #[error("cluster DNS: {0}")]
    Dns(String),
    #[error("the service proxy stopped: {0}")]
    Proxy(#[source] k8rs_proxy::Error),
    #[error("the kubelet stopped: {0}")]
    Kubelet(#[source] k8rs_kubelet::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
