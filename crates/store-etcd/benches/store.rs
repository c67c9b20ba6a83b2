//! A short benchmark of the etcd backend against a fresh local etcd: create throughput and
//! latency with 32 concurrent writers, then the latency of listing all the keys written.
//! Run with `cargo bench -p k8rs-store-etcd --bench store`; it takes well under a minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use k8rs_store::Store;
use k8rs_store_etcd::EtcdStore;
use k8rs_store_etcd::testing::EtcdProcess;

const WRITERS: usize = 32;
const WRITES: usize = 10_000;
/// About the size of a small Kubernetes object.
const VALUE_BYTES: usize = 1024;
const RANGE_REPEATS: usize = 10;
const PAGE: usize = 500;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let etcd = EtcdProcess::start();
    runtime.block_on(async {
        let store = Arc::new(EtcdStore::connect(etcd.config()).await?);
        let bench = async {
            bench_creates(&store).await?;
            bench_ranges(&store).await
        };
        tokio::time::timeout(Duration::from_secs(60), bench).await?
    })
}

async fn bench_creates(store: &Arc<EtcdStore>) -> anyhow::Result<()> {
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let started = Instant::now();
    let writers = (0..WRITERS).map(|writer| {
        let (store, value) = (store.clone(), value.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(WRITES / WRITERS + 1);
            for i in (writer..WRITES).step_by(WRITERS) {
                let begun = Instant::now();
                store
                    .create(&format!("/bench/{i:05}"), value.clone())
                    .await?;
                latencies.push(begun.elapsed());
            }
            anyhow::Ok(latencies)
        })
    });
    let mut latencies = Vec::with_capacity(WRITES);
    for writer in join_all(writers).await {
        latencies.extend(writer??);
    }
    let elapsed = started.elapsed();
    println!(
        "create: {WRITES} x {VALUE_BYTES} B, {WRITERS} writers: {:.0} creates/s, {}",
        WRITES as f64 / elapsed.as_secs_f64(),
        percentiles(&mut latencies)
    );
    Ok(())
}

async fn bench_ranges(store: &EtcdStore) -> anyhow::Result<()> {
    let mut whole = Vec::with_capacity(RANGE_REPEATS);
    let mut paged = Vec::with_capacity(RANGE_REPEATS);
    for _ in 0..RANGE_REPEATS {
        let begun = Instant::now();
        let range = store.range("/bench/", None, 0, None).await?;
        whole.push(begun.elapsed());
        anyhow::ensure!(range.kvs.len() == WRITES, "listed {} keys", range.kvs.len());

        let begun = Instant::now();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .range("/bench/", after.as_deref(), PAGE, Some(range.revision))
                .await?;
            after = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        paged.push(begun.elapsed());
    }
    println!(
        "range of {WRITES} keys, one request: {}",
        percentiles(&mut whole)
    );
    println!(
        "range of {WRITES} keys, pages of {PAGE} at a fixed revision: {}",
        percentiles(&mut paged)
    );
    Ok(())
}

fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort();
    if latencies.is_empty() {
        return "no samples".into();
    }
    let at = |fraction: f64| {
        let index = ((latencies.len() as f64 * fraction) as usize).min(latencies.len() - 1);
        latencies[index]
    };
    format!(
        "p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        at(0.50),
        at(0.99),
        at(1.0)
    )
}
