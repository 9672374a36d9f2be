//! A large but valid policy (an `except` list of tens of thousands of entries) is
//! resolved and written off the runtime's workers: `/healthz` and `/metrics` keep
//! answering while the agent applies it, and the policy is enforced in the end.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

const EXCEPT: u32 = 50_000;
const NODE: &str = "node-r";

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    get(addr, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn big_policy() -> String {
    let mut text = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: big, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock:\n            cidr: 10.0.0.0/8\n            except:\n",
    );
    for i in 0..EXCEPT {
        let [_, b, c, d] = (0x0a00_0000u32 + i * 7).to_be_bytes();
        text.push_str(&format!("              - 10.{b}.{c}.{d}/32\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_while_a_large_policy_is_applied() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "needs root (BPF): run scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("pods.yaml"),
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: shop}}\nspec: {{nodeName: {NODE}, containers: [{{name: c, image: x}}]}}\nstatus: {{phase: Running, podIP: 10.9.0.2}}\n"),
    )
    .unwrap();
    let pins = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/netpol-responsive-test-{}",
        std::process::id()
    ));
    let local = config::BindAddr {
        host: Some([127, 0, 0, 1].into()),
        port: 0,
    };
    let config = config::AgentConfig {
        enable_network_policy: true,
        log_file: dir.path().join("flows").join("network-policy-agent.log"),
        metrics_bind_addr: local,
        health_probe_bind_addr: local,
        node_name: Some(NODE.into()),
        policy_dir: Some(policies.clone()),
        bpffs_pin_dir: pins.clone(),
        conntrack_cache_table_size: 32768,
        ..config::AgentConfig::default()
    };
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let daemon = tokio::spawn(agent::daemon::run(config, shutdown.clone(), Some(tx), None));
    let running = rx.await.expect("the daemon starts");
    let (health, metrics) = (running.health_addr, running.metrics_addr);

    let first = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(r) = metric(metrics, "network_policy_applied_revision")
                && r > 0
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "the first state was never applied"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();

    // The large policy, then probes from another thread until it is applied.
    std::fs::write(policies.join("big.yaml"), big_policy()).unwrap();
    let written = Instant::now();
    let applying = Arc::new(AtomicBool::new(true));
    let prober = {
        let applying = applying.clone();
        std::thread::spawn(move || {
            let (mut answered, mut failed, mut slowest) = (0u32, 0u32, Duration::ZERO);
            while applying.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let ok = get(health, "/healthz").is_some() && get(metrics, "/metrics").is_some();
                let took = sent.elapsed();
                if applying.load(Ordering::Relaxed) {
                    if ok {
                        answered += 1
                    } else {
                        failed += 1
                    }
                    slowest = slowest.max(took);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (answered, failed, slowest)
        })
    };
    let applied = {
        let enforcer = running.enforcer.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let done = metric(metrics, "network_policy_applied_revision")
                    .is_some_and(|r| r > first)
                    && enforcer.lock().unwrap().last_resolution().is_some_and(|r| {
                        r.pods
                            .values()
                            .any(|p| p.ingress.entries.len() > EXCEPT as usize)
                    });
                if done {
                    return written.elapsed();
                }
                assert!(
                    Instant::now() < deadline,
                    "the large policy was never applied"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .unwrap()
    };
    applying.store(false, Ordering::Relaxed);
    let (answered, failed, slowest) = prober.join().unwrap();
    eprintln!(
        "applied {EXCEPT} except entries {applied:?} after the write; {answered} health+metrics answers meanwhile, slowest {slowest:?}"
    );
    assert_eq!(failed, 0, "every probe answered");
    assert!(
        answered >= 3,
        "health and metrics kept answering during the apply ({answered} answers in {applied:?})"
    );

    shutdown.cancel();
    daemon.await.unwrap().expect("clean shutdown");
    let _ = std::fs::remove_dir_all(&pins);
    let _ = std::fs::remove_file(agent::guard::run_file(&pins, "lock"));
    let _ = std::fs::remove_file(agent::guard::run_file(&pins, "policies.json"));
}
