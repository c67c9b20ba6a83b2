//! A small benchmark of the embedded store on a file (fsync on every commit): concurrent creates
//! with their latency, gets, and reading a range of 10,000 keys. It prints figures, asserts
//! nothing, and stays under a minute. Run with `cargo bench -p k8rs-store-embedded`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8rs_store::Store;
use k8rs_store_embedded::{EmbeddedStore, Options};

const WRITERS: usize = 32;
const CREATES: usize = 20_000;
const VALUE_LEN: usize = 512;
const GET_TASKS: usize = 32;
const GETS: usize = 100_000;
const RANGE_KEYS: usize = 10_000;
const RANGE_ROUNDS: usize = 20;

fn key(i: usize) -> String {
    format!("/registry/pods/bench/pod-{i:06}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One writer: every create waits for its own fsync. The baseline that group commit improves on.
async fn bench_sequential_creates(store: &Arc<EmbeddedStore>) {
    const SEQUENTIAL: usize = 300;
    let value = Bytes::from(vec![b'v'; VALUE_LEN]);
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        store
            .create(&format!("/sequential/{i}"), value.clone())
            .await
            .expect("create");
    }
    let elapsed = started.elapsed();
    println!(
        "creates: {SEQUENTIAL} by 1 writer in {:.2} s = {:.0}/s ({:.2} ms each)",
        elapsed.as_secs_f64(),
        SEQUENTIAL as f64 / elapsed.as_secs_f64(),
        millis(elapsed) / SEQUENTIAL as f64,
    );
}

async fn bench_creates(store: &Arc<EmbeddedStore>) {
    let value = Bytes::from(vec![b'v'; VALUE_LEN]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, value) = (store.clone(), value.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(CREATES / WRITERS);
                for i in (writer..CREATES).step_by(WRITERS) {
                    let t = Instant::now();
                    store.create(&key(i), value.clone()).await.expect("create");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(CREATES);
    for task in tasks {
        latencies.extend(task.await.expect("writer task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "creates: {CREATES} by {WRITERS} writers ({VALUE_LEN} B values) in {:.2} s = {:.0}/s; \
         latency p50 {:.2} ms, p99 {:.2} ms",
        elapsed.as_secs_f64(),
        CREATES as f64 / elapsed.as_secs_f64(),
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.99)),
    );
}

async fn bench_gets(store: &Arc<EmbeddedStore>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..GET_TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (task..GETS).step_by(GET_TASKS) {
                    let found = store.get(&key(i * 7919 % CREATES)).await.expect("get");
                    assert!(found.is_some());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("get task");
    }
    let elapsed = started.elapsed();
    println!(
        "gets: {GETS} by {GET_TASKS} tasks in {:.2} s = {:.0}/s",
        elapsed.as_secs_f64(),
        GETS as f64 / elapsed.as_secs_f64()
    );
}

async fn bench_range(store: &Arc<EmbeddedStore>) {
    let at = store.current_revision().await.expect("revision");
    for (label, revision) in [("current", None), ("past revision", Some(at - 1_000))] {
        let mut latencies = Vec::with_capacity(RANGE_ROUNDS);
        for _ in 0..RANGE_ROUNDS {
            let t = Instant::now();
            let range = store
                .range("/registry/pods/bench/", None, RANGE_KEYS, revision)
                .await
                .expect("range");
            latencies.push(t.elapsed());
            assert_eq!(range.kvs.len(), RANGE_KEYS);
        }
        latencies.sort();
        println!(
            "range of {RANGE_KEYS} keys ({label}): p50 {:.1} ms, max {:.1} ms",
            millis(percentile(&latencies, 0.50)),
            millis(percentile(&latencies, 1.0)),
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.redb");
    runtime.block_on(async {
        let store = Arc::new(EmbeddedStore::open(&path, Options::default()).expect("open"));
        bench_sequential_creates(&store).await;
        bench_creates(&store).await;
        bench_gets(&store).await;
        bench_range(&store).await;
    });
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("file: {:.1} MB", len as f64 / 1e6);
}
