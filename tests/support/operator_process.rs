//! The operator binary run as a child process, as Kubernetes runs it: it can be killed with
//! SIGKILL, its JSON log is kept, and its HTTP endpoints are read over loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Check, wait_for};

/// A running `lgtm-operator run`.
pub struct OperatorProcess {
    child: tokio::process::Child,
    log: PathBuf,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// Starts the operator against `kubeconfig`, watching `namespace`, with `args` added
    /// to `run`; returns once its HTTP server listens.
    pub async fn start(kubeconfig: &Path, namespace: &str, args: &[&str]) -> Self {
        Self::start_as(kubeconfig, namespace, "lgtm-operator-test", args).await
    }

    /// [`start`](Self::start) as the pod `identity` (its `POD_NAME`, which names it in
    /// leader election).
    pub async fn start_as(
        kubeconfig: &Path,
        namespace: &str,
        identity: &str,
        args: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("operator.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lgtm-operator"))
            .args(["run", "--namespace", namespace, "--listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env("POD_NAME", identity)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start the operator");
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        let address = wait_for(
            "the operator's HTTP server",
            Duration::from_secs(30),
            || {
                let log = read();
                async move {
                    let address = log
                        .lines()
                        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                        .find_map(|line| {
                            line["fields"]["address"]
                                .as_str()
                                .filter(|_| {
                                    line["fields"]["message"]
                                        .as_str()
                                        .is_some_and(|m| m.starts_with("serving /metrics"))
                                })
                                .and_then(|a| a.parse::<SocketAddr>().ok())
                        });
                    Ok(match address {
                        Some(address) => Check::Done(address),
                        None => Check::Pending(format!("operator log so far:\n{log}")),
                    })
                }
            },
        )
        .await;
        Self {
            child,
            log,
            address,
            _dir: dir,
        }
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the operator is running")
    }

    /// GET `path` from the operator's HTTP server: status and body.
    pub async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.address).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: operator\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// The sum of the samples of metric `name` whose labels contain every `labels` pair
    /// (`key="value"`), or 0 when there are none.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let (_, text) = self.get("/metrics").await.unwrap_or_default();
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|line| labels.iter().all(|l| line.contains(l)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the sum of metric `name` over lines with `labels` is above zero. A
    /// reconcile is counted when it returns, after its writes are visible, so a test that
    /// has seen a reconcile's effect waits for its count rather than reading it at once.
    pub async fn metric_counted(&self, name: &str, labels: &[&str], what: &str) -> f64 {
        wait_for(what, Duration::from_secs(30), || async {
            let value = self.metric(name, labels).await;
            Ok(if value > 0.0 {
                Check::Done(value)
            } else {
                Check::Pending(format!("{name}{labels:?} = {value}\n{}", self.log()))
            })
        })
        .await
    }

    /// Waits up to `within` for the process to exit by itself.
    pub async fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("wait for the operator"))
    }

    /// Sends `signal` (`KILL`, `TERM`) and waits until the process has exited.
    pub async fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("send a signal");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running 30s after SIG{signal}:\n{}", self.log()))
            .expect("wait for the operator")
    }
}
