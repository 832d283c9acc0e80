//! A steady load of writes: users registered one after another through a set of replicas,
//! as a client that moves on after an error would. What was acknowledged is kept, in order.

use super::Api;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    task: JoinHandle<Vec<String>>,
}

impl Writer {
    /// Registers `<prefix>-<n>` through each of `apis` in turn, `pause` apart.
    pub fn start(apis: Vec<Api>, prefix: &str, pause: Duration) -> Self {
        let (stop, acknowledged) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (stopped, count, prefix) = (stop.clone(), acknowledged.clone(), prefix.to_owned());
        let task = tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0.. {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let (status, body) =
                    apis[n % apis.len()].post("/users", json!({ "name": format!("{prefix}-{n}") })).await;
                match status {
                    StatusCode::CREATED => {
                        ids.push(body["id"].as_str().expect("an id").to_owned());
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    // Redis away (a failover, a cut): nothing or an unknown outcome; move on.
                    StatusCode::SERVICE_UNAVAILABLE => {}
                    other => panic!("registering failed with {other}: {body}"),
                }
                tokio::time::sleep(pause).await;
            }
            ids
        });
        Self { stop, acknowledged, task }
    }

    /// Waits until `n` more writes than now are acknowledged, for at most `bound`.
    pub async fn more(&self, n: usize, bound: Duration) {
        let target = self.acknowledged.load(Ordering::SeqCst) + n;
        let acknowledged = || async { self.acknowledged.load(Ordering::SeqCst) >= target };
        super::eventually_within(bound, &format!("{n} more acknowledged writes"), acknowledged).await;
    }

    /// Stops and returns the ids of the users registered, in the order acknowledged.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the writer ran")
    }
}
