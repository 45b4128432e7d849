//! The storage probe's memory: one answer per cluster, kept until the cluster's storage
//! settings or Secret values change, checked again with backoff while it fails and now
//! and then while it passes. kube-runtime runs one reconcile per object at a time, so a
//! cluster never has two probes running; a semaphore bounds them across clusters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::plan::secrets::BucketCheck;
use crate::probe::{self, ProbeTarget};
use crate::telemetry::{Metrics, ProbeLabels, backoff};

/// Probes running at once, across clusters.
const PARALLEL: usize = 4;

/// How long a passing answer is trusted before the bucket is checked again (a key
/// revoked at the provider changes nothing the operator watches).
pub const RECHECK_PASSED: Duration = Duration::from_secs(600);

/// What the cluster reconcile does with a probe's answer.
pub struct Checked {
    pub bucket: BucketCheck,
    /// When to look again.
    pub recheck_after: Duration,
}

struct Answer {
    /// [`crate::plan::secrets::probe_key`] of the settings probed.
    key: String,
    bucket: BucketCheck,
    /// Failures in a row with this key.
    failures: u32,
    at: Instant,
}

pub struct Probes {
    answers: Mutex<HashMap<String, Answer>>,
    permits: Semaphore,
}

impl Default for Probes {
    fn default() -> Self {
        Self {
            answers: Mutex::default(),
            permits: Semaphore::new(PARALLEL),
        }
    }
}

impl Probes {
    /// The answer for cluster `uid` with settings `key`: remembered while it holds,
    /// probed now when the key is new or the answer is due.
    pub async fn check(
        &self,
        uid: &str,
        key: &str,
        target: &ProbeTarget,
        metrics: &Metrics,
    ) -> Checked {
        if let Some(checked) = self.remembered(uid, key) {
            return checked;
        }
        let bucket = {
            let _permit = self.permits.acquire().await;
            let started = Instant::now();
            let bucket = match probe::probe(target).await {
                Ok(()) => BucketCheck::Verified,
                Err(failure) => BucketCheck::Failed(failure),
            };
            let labels = ProbeLabels {
                backend: target.backend.name(),
                result: match &bucket {
                    BucketCheck::Failed(failure) => failure.reason.as_str(),
                    _ => "BucketVerified",
                },
            };
            metrics.storage_probes.get_or_create(&labels).inc();
            metrics
                .storage_probe_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            bucket
        };
        let mut answers = self.answers.lock().expect("probe answers");
        let failures = match (&bucket, answers.get(uid)) {
            (BucketCheck::Failed(_), Some(last)) if last.key == key => last.failures + 1,
            (BucketCheck::Failed(_), _) => 1,
            _ => 0,
        };
        answers.insert(
            uid.to_string(),
            Answer {
                key: key.to_string(),
                bucket: bucket.clone(),
                failures,
                at: Instant::now(),
            },
        );
        Checked {
            bucket,
            recheck_after: due_after(failures),
        }
    }

    fn remembered(&self, uid: &str, key: &str) -> Option<Checked> {
        let answers = self.answers.lock().expect("probe answers");
        let answer = answers.get(uid).filter(|a| a.key == key)?;
        let due = due_after(answer.failures);
        let elapsed = answer.at.elapsed();
        (elapsed < due).then(|| Checked {
            bucket: answer.bucket.clone(),
            recheck_after: due - elapsed,
        })
    }
}

/// How long an answer holds: a failing one backs off (5 s doubling to 5 min), a passing
/// one holds [`RECHECK_PASSED`].
fn due_after(failures: u32) -> Duration {
    match failures {
        0 => RECHECK_PASSED,
        n => backoff(n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_passes_hold_ten_minutes() {
        assert_eq!(due_after(0), RECHECK_PASSED);
        assert_eq!(due_after(1), Duration::from_secs(5));
        assert_eq!(due_after(2), Duration::from_secs(10));
        assert_eq!(due_after(30), Duration::from_secs(300));
    }
}
