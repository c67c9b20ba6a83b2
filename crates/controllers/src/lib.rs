//! The controller manager's controllers, one module each, as upstream's kube-controller-manager.
//!
//! Every controller is a client of the API server (through `kube`): none may depend on the API
//! server or a store crate. Each module exposes `run(client, config, shutdown)` and its own
//! error type; the binary starts them inside `k8rs server`.

pub mod nodeipam;
