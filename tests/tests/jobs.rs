//! Batch jobs end to end: the Redis queue's conformance, and jobs submitted to a real
//! cluster (coordinator, worker processes, redis-server) on loopback.

use std::sync::Arc;

use polaroid_jobs::{JobQueue, QueueSettings, RedisQueue};
use polaroid_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_queue_conforms() -> anyhow::Result<()> {
    let redis = redis_server().await?;
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let runs = std::sync::atomic::AtomicUsize::new(0);
    polaroid_jobs::conformance::run_all(|settings: QueueSettings| {
        // A fresh prefix per case: an empty queue each time.
        let prefix = format!("conformance-{}", runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let url = url.clone();
        async move {
            Arc::new(RedisQueue::connect(&url, &prefix, settings).await.expect("connect"))
                as Arc<dyn JobQueue>
        }
    })
    .await;
    Ok(())
}
