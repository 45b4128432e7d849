//! A TCP proxy in front of the API server that a test can cut, as a network partition
//! cuts a replica off: after the cut, every connection through it, open or new, stays
//! open and silent, so requests hang rather than fail fast.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; dropped, it closes every connection.
pub struct Partition {
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Partition {
    /// A proxy to the API server of `kubeconfig`, and a kubeconfig that goes through it.
    pub async fn start(kubeconfig: &Path) -> Self {
        let text = std::fs::read_to_string(kubeconfig).expect("read the kubeconfig");
        let server = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("server: https://"))
            .expect("a server in the kubeconfig")
            .to_string();
        let upstream: SocketAddr = server
            .parse()
            .expect("the server is an IP address and port");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let dir = tempfile::tempdir().expect("temporary directory");
        let proxied = dir.path().join("kubeconfig");
        std::fs::write(&proxied, text.replace(&server, &address.to_string()))
            .expect("write the proxied kubeconfig");
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(forward(client, upstream, cut_rx.clone()));
            }
        });
        Self {
            cut,
            task,
            kubeconfig: proxied,
            _dir: dir,
        }
    }

    /// The kubeconfig whose API server is this proxy.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Cuts every connection through the proxy, open and to come.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes both ways until the cut; then holds both sockets open, silent.
async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let already_cut = *cut.borrow();
    if already_cut {
        return hold(client).await;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let cut_now = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = cut.changed() => true,
    };
    if cut_now {
        hold((client, server)).await;
    }
}

/// Keeps `sockets` open, forwarding nothing, until the proxy is dropped.
async fn hold<T>(sockets: T) {
    std::future::pending::<()>().await;
    drop(sockets);
}
