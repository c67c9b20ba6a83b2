//! The `Store` conformance suite, each case on a fresh etcd of its own.

k8rs_store::conformance_suite!(async { k8rs_store_etcd::testing::fresh_store().await });
