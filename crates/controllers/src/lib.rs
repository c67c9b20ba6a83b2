//! The controller manager's controllers, one module each, as upstream's kube-controller-manager.
//!
//! Every controller is a client of the API server (through `kube`): none may depend on the API
//! server or a store crate. Each module exposes `run(client, config, shutdown)`; all but node
//! IPAM share this crate's [`Error`]. The binary starts them inside `k8rs server`.

pub mod certificates;
pub mod disruption;
mod error;
pub mod garbagecollector;
mod informer;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod resourcequota;
pub mod rootcacert;
pub mod serviceaccount;
pub mod servicelb;
#[cfg(test)]
mod testutil;

pub use error::Error;
