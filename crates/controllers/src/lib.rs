//! The controller manager's controllers, one module each, as upstream's kube-controller-manager.
//!
//! Every controller is a client of the API server (through `kube`): none may depend on the API
//! server or a store crate. Each module exposes `run(informers, config, shutdown)` and takes
//! every typed cache it needs from the process's `k8rs_controller_runtime::SharedInformers`
//! (the garbage collector and the quota's object counts watch metadata only, through their own
//! dynamic watches); all but node IPAM share this crate's [`Error`]. The binary starts them
//! inside `k8rs server`.

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
