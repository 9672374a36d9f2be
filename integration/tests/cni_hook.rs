//! The VPC CNI's hook, called as the CNI calls it (gRPC over the unix socket) against
//! the enforcer with real traffic between pods wired at the CNI's interface names:
//! ADD in strict mode leaves the pod default-deny before the call returns, standard
//! mode leaves it open, a pod the cluster state does not list yet stays enforced, DEL
//! detaches, and malformed or impossible requests get an error status, never a crash.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use cni_hook::{
    EnforceRequest, HookClient, HookError, HookMetrics, HookServer, PodHook, PodKey,
    proto::{DeleteNpRequest, EnforceNpRequest},
};
use datapath::AttachMode;
use enforcer::{Enforcer, binding::host_veth_name, cni::EnforcerHook};
use exporter::{EnrichmentSnapshot, snapshot_handle};
use integration::podnet::*;
use policy::{ClusterState, EnforcingMode, ResolveOptions};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_millis(700);
const NAMESPACE: &str = "shop";

/// The enforcer's hook, run inside the node namespace (as the daemon runs there).
struct InNode {
    node: String,
    hook: EnforcerHook,
}

impl PodHook for InNode {
    fn enforce(&self, request: &EnforceRequest) -> Result<(), HookError> {
        let _in = netlab::enter_by_name(&self.node).expect("enter node");
        self.hook.enforce(request)
    }

    fn delete(&self, pod: &PodKey) -> Result<(), HookError> {
        let _in = netlab::enter_by_name(&self.node).expect("enter node");
        self.hook.delete(pod)
    }
}

/// `client` (pod 0) and `web` (pod 1) wired at their CNI names, an enforcer that has
/// applied nothing yet, and the hook served on a socket in a temporary directory.
struct Fixture {
    net: PodNet,
    enforcer: Arc<Mutex<Enforcer>>,
    metrics: HookMetrics,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    stop: CancellationToken,
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(mode: EnforcingMode) -> Self {
        let names = ["client", "web"].map(|p| host_veth_name("eni", NAMESPACE, p, 0));
        let net = PodNet::with_host_interfaces(names.to_vec(), AttachMode::Auto);
        let dp = net.load_adopting_only();
        let options = ResolveOptions {
            node_name: "node-1".into(),
            node_addresses: Vec::new(),
            mode,
        };
        let enforcer = Arc::new(Mutex::new(Enforcer::new(
            dp,
            options,
            snapshot_handle(EnrichmentSnapshot::default()),
        )));
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("aws-node/npa.sock");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hook = Arc::new(InNode {
            node: net.node.name().to_string(),
            hook: EnforcerHook::new(enforcer.clone()),
        });
        let metrics = HookMetrics::default();
        let stop = CancellationToken::new();
        let server = {
            let _rt = runtime.enter();
            HookServer::bind(&socket).expect("bind the hook socket")
        };
        runtime.spawn(server.serve(hook, metrics.clone(), stop.clone()));
        Self {
            net,
            enforcer,
            metrics,
            _dir: dir,
            socket,
            stop,
            runtime,
        }
    }

    fn client(&self) -> HookClient {
        self.runtime
            .block_on(HookClient::connect(self.socket.clone()))
            .expect("dial the hook")
    }

    /// EnforceNpToPod as the CNI sends it on ADD.
    fn add(&self, pod: &str, mode: &str) -> Result<bool, cni_hook::Status> {
        let mut client = self.client();
        self.runtime
            .block_on(client.enforce_np_to_pod(EnforceNpRequest {
                k8s_pod_name: pod.into(),
                k8s_pod_namespace: NAMESPACE.into(),
                network_policy_mode: mode.into(),
                interface_count: 1,
            }))
            .map(|r| r.success)
    }

    /// DeletePodNp as the CNI sends it on DEL.
    fn del(&self, pod: &str) -> Result<bool, cni_hook::Status> {
        let mut client = self.client();
        self.runtime
            .block_on(client.delete_pod_np(DeleteNpRequest {
                k8s_pod_name: pod.into(),
                k8s_pod_namespace: NAMESPACE.into(),
            }))
            .map(|r| r.success)
    }

    /// ADD that must succeed: the reply's `Success` is true.
    fn add_ok(&self, pod: &str, mode: &str) {
        match self.add(pod, mode) {
            Ok(success) => assert!(success, "ADD {pod} answered Success: false"),
            Err(status) => panic!("ADD {pod} ({mode}): {status:?}"),
        }
    }

    /// DEL that must succeed.
    fn del_ok(&self, pod: &str) {
        match self.del(pod) {
            Ok(success) => assert!(success, "DEL {pod} answered Success: false"),
            Err(status) => panic!("DEL {pod}: {status:?}"),
        }
    }

    fn reaches_web(&self, port: u16) -> bool {
        let web = SocketAddr::new(self.net.pods[1].ipv4, port);
        tcp_connect(&self.net, 0, web, TIMEOUT).is_some()
    }

    /// Retried: one connect can be lost on a busy machine.
    fn reaches_web_eventually(&self, port: u16) -> bool {
        (0..3).any(|_| self.reaches_web(port))
    }

    fn apply(&self, state: &ClusterState) {
        let _in = self.net.node.enter().unwrap();
        self.enforcer.lock().unwrap().apply(state).expect("apply");
    }

    /// Our link pins for interface `ifindex` (TCX) or our clsact filters on it.
    fn attached_to(&self, pod: usize) -> bool {
        let ifindex = self.net.pods[pod].link.host_ifindex;
        let links = datapath::PinLayout::new(&self.net.pins).links_dir();
        let pinned = std::fs::read_dir(&links).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                datapath::PinLayout::parse_link_name(&e.file_name().to_string_lossy())
                    .is_some_and(|(i, _)| i == ifindex)
            })
        });
        let filters = self
            .net
            .node
            .exec(
                "tc",
                &[
                    "filter",
                    "show",
                    "dev",
                    &self.net.pods[pod].link.host_if,
                    "egress",
                ],
            )
            .unwrap_or_default();
        pinned || filters.contains("pod_ingress")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Web admits client on 8080; client may send anywhere (strict mode denies a pod
/// no policy selects).
fn state_with_web() -> ClusterState {
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {NAMESPACE}, labels: {{app: web}}}}\n\
         spec: {{nodeName: node-1, containers: [{{name: c, image: x}}]}}\n\
         status: {{phase: Running, podIPs: [{{ip: 10.200.0.3}}]}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: {NAMESPACE}, labels: {{app: client}}}}\n\
         spec: {{nodeName: node-1, containers: [{{name: c, image: x}}]}}\n\
         status: {{phase: Running, podIPs: [{{ip: 10.200.0.2}}]}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web-8080, namespace: {NAMESPACE}}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n    - from: [{{podSelector: {{matchLabels: {{app: client}}}}}}]\n      ports: [{{port: 8080}}]\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: client-out, namespace: {NAMESPACE}}}\n\
         spec: {{podSelector: {{matchLabels: {{app: client}}}}, policyTypes: [Egress], egress: [{{}}]}}\n"
    );
    policy::load_str("cluster.yaml", &yaml).expect("cluster YAML")
}

#[test]
fn strict_add_denies_before_returning_and_del_detaches() {
    let fx = Fixture::new(EnforcingMode::Strict);
    let _servers = Servers::start(&fx.net, 1, &[8080, 8081], &[]);
    assert!(fx.reaches_web_eventually(8080), "open before the CNI's ADD");
    assert!(!fx.attached_to(1));

    // ADD for web in strict mode: denied both ways the moment the call returns (no
    // wait, no apply: the cluster state has not seen the pod).
    fx.add_ok("web", "strict");
    assert!(fx.attached_to(1));
    assert!(!fx.reaches_web(8080), "strict: default deny after ADD");
    assert!(!fx.reaches_web(8081));
    assert_eq!(
        fx.enforcer.lock().unwrap().cni_only_pods(),
        [policy::PodRef::new(NAMESPACE, "web")]
    );

    // The pod watch lags: a state without the pod keeps it enforced.
    fx.apply(&ClusterState::default());
    assert!(fx.attached_to(1), "kept while the state does not list it");
    assert!(!fx.reaches_web(8080));

    // ADD again (the kubelet retries) is harmless.
    fx.add_ok("web", "strict");

    // The state catches up: its policies replace the initial deny.
    fx.apply(&state_with_web());
    assert!(fx.enforcer.lock().unwrap().cni_only_pods().is_empty());
    assert!(
        fx.reaches_web_eventually(8080),
        "policy admits client on 8080"
    );
    assert!(!fx.reaches_web(8081), "and nothing else");

    // DEL detaches at once and forgets the binding.
    fx.del_ok("web");
    assert!(
        !fx.attached_to(1),
        "no link pins or filters left on web's veth"
    );
    assert!(
        fx.enforcer
            .lock()
            .unwrap()
            .interface_of(&policy::PodRef::new(NAMESPACE, "web"))
            .is_none()
    );
    // A DEL for a pod never bound (or a second DEL) is fine.
    fx.del_ok("web");
    assert_eq!(fx.metrics.calls("EnforceNpToPod", "ok"), 2);
    assert_eq!(fx.metrics.calls("DeletePodNp", "ok"), 2);
}

#[test]
fn standard_add_leaves_an_unknown_pod_open_and_del_detaches() {
    let fx = Fixture::new(EnforcingMode::Standard);
    let _servers = Servers::start(&fx.net, 1, &[8080], &[]);
    fx.add_ok("web", "standard");
    assert!(fx.attached_to(1));
    assert!(
        fx.reaches_web_eventually(8080),
        "standard: open until policies are known"
    );
    fx.del_ok("web");
    assert!(!fx.attached_to(1));
    assert!(fx.reaches_web_eventually(8080));
}

#[test]
fn bad_requests_get_an_error_status_and_the_hook_keeps_serving() {
    let fx = Fixture::new(EnforcingMode::Strict);
    let _servers = Servers::start(&fx.net, 1, &[8080], &[]);
    let mut client = fx.client();
    for request in [
        EnforceNpRequest::default(),
        EnforceNpRequest {
            k8s_pod_name: "web".into(),
            k8s_pod_namespace: "Shop!".into(),
            network_policy_mode: "strict".into(),
            interface_count: 1,
        },
        EnforceNpRequest {
            k8s_pod_name: "web".into(),
            k8s_pod_namespace: NAMESPACE.into(),
            network_policy_mode: "paranoid".into(),
            interface_count: 1,
        },
    ] {
        let status = fx
            .runtime
            .block_on(client.enforce_np_to_pod(request))
            .unwrap_err();
        assert_eq!(status.code(), cni_hook::Code::InvalidArgument, "{status:?}");
    }
    let status = fx
        .runtime
        .block_on(client.delete_pod_np(DeleteNpRequest::default()))
        .unwrap_err();
    assert_eq!(status.code(), cni_hook::Code::InvalidArgument);
    // A pod whose veth does not exist: the CNI's ADD fails, naming the interface.
    let status = fx.add("ghost", "strict").unwrap_err();
    assert_eq!(status.code(), cni_hook::Code::FailedPrecondition);
    let expected = host_veth_name("eni", NAMESPACE, "ghost", 0);
    assert!(status.message().contains(&expected), "{status:?}");
    // Nothing was attached by the refused calls; the hook still serves.
    assert!(!fx.attached_to(1));
    assert!(fx.reaches_web_eventually(8080));
    fx.add_ok("web", "strict");
    assert!(!fx.reaches_web(8080));
    assert_eq!(fx.metrics.calls("EnforceNpToPod", "invalid_argument"), 3);
    assert_eq!(fx.metrics.calls("EnforceNpToPod", "no_interface"), 1);
}
