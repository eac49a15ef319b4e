//! Cluster fan-out with real `edge` processes: a purge sent to one node reaches its
//! peers, is not forwarded again, and a peer that is down is reported, not fatal. The
//! purge is sent with the `edge purge` client.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Route, TestOrigin, cache_status};
use serde_json::Value;

const TOKEN: &str = "cluster-test-token";

/// Ports that were free a moment ago: bound on 127.0.0.1:0, then released for a child
/// process to bind.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One `edge serve` process, killed when dropped.
struct Node {
    child: Option<Child>,
    port: u16,
    admin_port: u16,
}

impl Node {
    fn start(
        dir: &Path,
        name: &str,
        port: u16,
        admin_port: u16,
        peers: &[u16],
        origin: &TestOrigin,
    ) -> Node {
        let peers: Vec<String> = peers
            .iter()
            .map(|p| format!("\"http://127.0.0.1:{p}\""))
            .collect();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"1s\"\n\
                 [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_env = \"EDGE_ADMIN_TOKEN\"\n\
                 [cluster]\npeers = [{}]\ntimeout = \"1s\"\nretries = 1\n\
                 [cache]\ndir = \"{name}-cache\"\n\
                 [[site]]\nname = \"web\"\nhosts = [\"*\"]\norigin = \"{}\"\n",
                peers.join(", "),
                origin.url()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("EDGE_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Node {
            child: Some(child),
            port,
            admin_port,
        }
    }

    fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(format!("{}/readyz", self.admin())).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node on admin port {} never became ready",
                self.admin_port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn hit(client: &reqwest::Client, node: &Node, path: &str) -> bool {
    let r = client.get(node.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    cache_status(&r).contains("; hit")
}

/// Runs `edge purge` with `args`; its exit code and parsed JSON output.
fn edge_purge(args: &[&str], token: &str) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("purge")
        .args(args)
        .env("EDGE_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_fans_out_to_live_peers_and_reports_the_peer_that_is_down() {
    let origin = TestOrigin::start().await;
    origin.route("/x.css", Route::ok("x"));
    origin.route("/y.css", Route::ok("y"));
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(6);
    let admin_ports = [ports[3], ports[4], ports[5]];
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let peers: Vec<u16> = (0..3).filter(|j| *j != i).map(|j| admin_ports[j]).collect();
            Node::start(
                dir.path(),
                &format!("node{i}"),
                ports[i],
                admin_ports[i],
                &peers,
                &origin,
            )
        })
        .collect();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for node in &nodes {
        node.wait_ready(&client).await;
    }
    for node in &nodes {
        for path in ["/x.css", "/y.css"] {
            client.get(node.url(path)).send().await.unwrap();
            assert!(
                hit(&client, node, path).await,
                "{path} stored on {}",
                node.port
            );
        }
    }
    // The third node goes down.
    nodes[2].stop();
    let down = nodes[2].admin();

    let admin = nodes[0].admin();
    let (code, report, stderr) = edge_purge(
        &["--url", "http://127.0.0.1/x.css", "--admin", &admin],
        TOKEN,
    );
    assert_eq!(
        code,
        Some(2),
        "purged, but a peer failed: {report} {stderr}"
    );
    assert!(stderr.contains(&down), "{stderr}");
    assert_eq!(report["purged"]["url"], 1, "{report}");
    let peers = report["peers"].as_array().expect("per-peer results");
    assert_eq!(peers.len(), 2, "{report}");
    let live = &peers[0];
    assert_eq!(live["peer"], nodes[1].admin());
    assert_eq!(live["ok"], true, "{report}");
    assert_eq!(live["status"], 200);
    assert_eq!(
        live["response"]["purged"]["url"], 1,
        "the peer purged too: {report}"
    );
    assert_eq!(
        live["response"]["peers"],
        serde_json::json!([]),
        "a forwarded purge is not forwarded again"
    );
    let dead = &peers[1];
    assert_eq!(dead["peer"], down);
    assert_eq!(dead["ok"], false, "{report}");
    assert_eq!(dead["attempts"], 2, "one retry: {report}");
    assert!(
        dead["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{report}"
    );

    for node in &nodes[..2] {
        assert!(
            !hit(&client, node, "/x.css").await,
            "purged on {}",
            node.port
        );
        assert!(
            hit(&client, node, "/y.css").await,
            "untouched on {}",
            node.port
        );
    }

    // A refused purge (wrong token) exits 1 and purges nothing anywhere.
    let (code, report, _) =
        edge_purge(&["--tag", "any", "--all", "--admin", &admin], "wrong-token");
    assert_eq!(code, Some(1), "{report}");
    assert!(report["error"].is_string(), "{report}");
    for node in &nodes[..2] {
        assert!(
            hit(&client, node, "/y.css").await,
            "nothing purged on {}",
            node.port
        );
    }
}
