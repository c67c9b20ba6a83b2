//! The shared conformance suite, against the in-memory engine and a file-backed store.

mod in_memory {
    use k8rs_store_embedded::EmbeddedStore;

    k8rs_store::conformance_suite!(async {
        EmbeddedStore::in_memory().expect("in-memory store opens")
    });
}

mod file_backed {
    use k8rs_store_embedded::{EmbeddedStore, Options};

    /// A store in a fresh directory that lives as long as the store.
    async fn fresh() -> (EmbeddedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("store.redb"), Options::default())
            .expect("file store opens");
        (store, dir)
    }

    k8rs_store::conformance_suite!(fresh());
}

mod tiny_watch_buffer {
    //! Every watcher lags at once and must catch up from history.
    use k8rs_store_embedded::{EmbeddedStore, Options};

    k8rs_store::conformance_suite!(async {
        let options = Options {
            watch_buffer: 1,
            max_batch: 4,
            ..Options::default()
        };
        EmbeddedStore::in_memory_with(options).expect("in-memory store opens")
    });
}
