//! The test harness itself: a throwaway etcd that answers and is gone after drop.

use std::path::Path;

use k8rs_store::Store;
use k8rs_store_etcd::EtcdStore;
use k8rs_store_etcd::testing::EtcdProcess;

#[tokio::test]
async fn a_started_etcd_answers_and_is_killed_on_drop() {
    let etcd = EtcdProcess::start();
    assert!(
        etcd.endpoint().starts_with("http://127.0.0.1:"),
        "{}",
        etcd.endpoint()
    );
    let pid = etcd.pid();
    let log = etcd.log_path();
    let store = EtcdStore::connect(etcd.config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.current_revision().await.ok(),
        Some(1),
        "a fresh etcd is at revision 1"
    );
    assert!(log.exists(), "etcd logs to {log:?}");
    drop(etcd);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "etcd {pid} survived its drop"
    );
    assert!(!log.exists(), "the temp dir is removed");
}

#[test]
fn processes_started_together_get_their_own_ports_and_data() {
    let first = std::thread::spawn(EtcdProcess::start);
    let second = EtcdProcess::start();
    let first = first
        .join()
        .unwrap_or_else(|_| panic!("the first etcd failed to start"));
    assert_ne!(first.endpoint(), second.endpoint());
    assert_ne!(first.log_path(), second.log_path());
}
