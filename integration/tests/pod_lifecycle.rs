//! Pods through the lifecycles a real cluster produces, with real traffic: a finished
//! or not-yet-wired pod that still has an address never captures the node's uplink; an
//! address reused by a live pod stays with the pod that owns the interface, also when
//! the old pod goes; a pod seen before its interface exists is bound and enforced as
//! soon as the interface appears. Interfaces are named as the VPC CNI names them.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use datapath::{AttachMode, links::LinkEvents};
use datapath_common::{STATE_DEFAULT_ALLOW, STATE_POLICIES_APPLIED};
use enforcer::{Enforcer, binding::host_veth_name};
use exporter::{EnrichmentSnapshot, snapshot_handle};
use integration::podnet::*;
use netlab::{NetNs, PodSpec, unique_name, wire_pod};
use policy::{ClusterState, EnforcingMode, ResolveOptions};

const TIMEOUT: Duration = Duration::from_millis(700);
const NODE: &str = "node-1";

/// A pod of the cluster state: (name, app label, phase, addresses).
struct PodDoc<'a>(&'a str, &'a str, &'a str, Vec<IpAddr>);

/// Namespace `shop`, the pods, and a policy that lets `client` reach `web` on 8080 only.
fn cluster(pods: &[PodDoc<'_>]) -> ClusterState {
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n");
    for PodDoc(name, app, phase, ips) in pods {
        let ips: Vec<String> = ips.iter().map(|ip| format!("{{ip: {ip}}}")).collect();
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\nspec: {{nodeName: {NODE}, containers: [{{name: c, image: x}}]}}\nstatus: {{phase: {phase}, podIPs: [{}]}}\n---\n",
            ips.join(", ")
        ));
    }
    yaml.push_str("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-8080, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n    - from: [{podSelector: {matchLabels: {app: client}}}]\n      ports: [{port: 8080}]\n");
    policy::load_str("cluster.yaml", &yaml).expect("cluster YAML")
}

fn cni_name(name: &str) -> String {
    host_veth_name("eni", "shop", name, 0)
}

/// `client` (pod 0) and `web` (pod 1), wired at their CNI names, and an enforcer.
fn client_and_web(mode: EnforcingMode) -> (PodNet, Enforcer) {
    let net =
        PodNet::with_host_interfaces(vec![cni_name("client"), cni_name("web")], AttachMode::Tcx);
    let dp = net.load_adopting_only();
    let options = ResolveOptions {
        node_name: NODE.into(),
        node_addresses: Vec::new(),
        mode,
    };
    let snapshot = snapshot_handle(EnrichmentSnapshot::default());
    let enforcer = Enforcer::new(dp, options, snapshot);
    (net, enforcer)
}

fn apply(net: &PodNet, enforcer: &mut Enforcer, state: &ClusterState) -> enforcer::ApplyReport {
    let _in_node = net.node.enter().unwrap();
    enforcer.apply(state).expect("apply")
}

fn connects(net: &PodNet, from: usize, to: IpAddr, port: u16) -> bool {
    tcp_connect(net, from, SocketAddr::new(to, port), TIMEOUT).is_some()
}

/// Web admits the client on 8080 and nothing on 8081 (retried: a connect can be lost).
fn assert_web_enforced(net: &PodNet, what: &str) {
    let web = net.pods[1].ipv4;
    assert!(
        (0..3).any(|_| connects(net, 0, web, 8080)),
        "{what}: client -> web:8080 is allowed"
    );
    assert!(
        !connects(net, 0, web, 8081),
        "{what}: client -> web:8081 is denied"
    );
}

/// A TCP listener in `ns` answering every connection, until dropped.
struct Listener {
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn start(ns: &NetNs, addr: SocketAddr) -> Self {
        let name = ns.name().to_string();
        let listener = std::thread::spawn(move || {
            let _in = netlab::enter_by_name(&name).unwrap();
            TcpListener::bind(addr).unwrap()
        })
        .join()
        .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if listener.accept().is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self { stop }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connects_from(ns: &NetNs, to: SocketAddr) -> bool {
    let name = ns.name().to_string();
    std::thread::spawn(move || {
        let _in = netlab::enter_by_name(&name).unwrap();
        (0..3).any(|_| TcpStream::connect_timeout(&to, TIMEOUT).is_ok())
    })
    .join()
    .unwrap()
}

#[test]
fn pods_with_an_address_but_no_interface_never_capture_the_uplink() {
    let (net, mut enforcer) = client_and_web(EnforcingMode::Standard);
    // The node's uplink: a link to an "outside" host, the default route through it.
    let outside = NetNs::create(&unique_name("npp")).unwrap();
    net.node
        .ip(&[
            "link",
            "add",
            "uplink0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            outside.name(),
        ])
        .unwrap();
    net.node
        .ip(&["addr", "add", "10.201.0.1/24", "dev", "uplink0"])
        .unwrap();
    net.node.ip(&["link", "set", "uplink0", "up"]).unwrap();
    net.node
        .ip(&["route", "add", "default", "via", "10.201.0.2"])
        .unwrap();
    outside
        .ip(&["addr", "add", "10.201.0.2/24", "dev", "eth0"])
        .unwrap();
    outside.ip(&["link", "set", "eth0", "up"]).unwrap();
    outside
        .ip(&["route", "add", "10.200.0.0/24", "via", "10.201.0.1"])
        .unwrap();
    let outside_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 201, 0, 2)), 7000);
    let _outside_server = Listener::start(&outside, outside_addr);
    let uplink = net.node.ifindex("uplink0").unwrap();
    assert!(
        connects_from(&net.node, outside_addr),
        "node -> outside before"
    );

    let (client, web) = (net.pods[0].ipv4, net.pods[1].ipv4);
    // A finished pod and a pod stuck terminating (or not wired yet): both keep an
    // address, neither has an interface or a host route.
    let state = cluster(&[
        PodDoc("client", "client", "Running", vec![client]),
        PodDoc("web", "web", "Running", vec![web]),
        PodDoc(
            "done",
            "web",
            "Succeeded",
            vec!["10.200.0.77".parse().unwrap()],
        ),
        PodDoc(
            "stuck",
            "web",
            "Running",
            vec!["10.200.0.78".parse().unwrap()],
        ),
    ]);
    let _servers = Servers::start(&net, 1, &[8080, 8081], &[]);
    let report = apply(&net, &mut enforcer, &state);
    let stuck = policy::ObjectRef::new("shop".to_string(), "stuck".to_string());
    assert_eq!(
        report.without_interface,
        std::slice::from_ref(&stuck),
        "only the live pod without an interface waits"
    );
    assert_eq!(
        report.attached.len(),
        2,
        "client and web, at their CNI names"
    );
    assert!(
        !enforcer.datapath().attached_ifindexes().contains(&uplink),
        "nothing attached to the uplink"
    );
    assert!(
        connects_from(&net.node, outside_addr),
        "node -> outside after"
    );
    assert!(
        (0..3).any(|_| tcp_connect(&net, 0, outside_addr, TIMEOUT).is_some()),
        "pod -> outside after"
    );
    assert_web_enforced(&net, "with unbound pods around");

    // An agent restart while the pod is stuck: the same.
    drop(enforcer);
    let (_, mut restarted) = {
        let dp = net.load_adopting_only();
        let options = ResolveOptions {
            node_name: NODE.into(),
            node_addresses: Vec::new(),
            mode: EnforcingMode::Standard,
        };
        (
            (),
            Enforcer::new(dp, options, snapshot_handle(EnrichmentSnapshot::default())),
        )
    };
    let report = apply(&net, &mut restarted, &state);
    assert_eq!(report.without_interface, [stuck]);
    assert!(!restarted.datapath().attached_ifindexes().contains(&uplink));
    assert!(
        connects_from(&net.node, outside_addr),
        "node -> outside after a restart"
    );
    assert_web_enforced(&net, "after a restart");
}

#[test]
fn a_reused_address_stays_with_the_pod_that_owns_the_interface() {
    let (net, mut enforcer) = client_and_web(EnforcingMode::Standard);
    let _servers = Servers::start(&net, 1, &[8080, 8081], &[]);
    let (client, web) = (net.pods[0].ipv4, net.pods[1].ipv4);
    let web_ifindex = net.pods[1].link.host_ifindex;
    // "old" held web's address before it finished; the address now belongs to web.
    for old_phase in ["Succeeded", "Failed", "Running"] {
        let state = cluster(&[
            PodDoc("client", "client", "Running", vec![client]),
            PodDoc("web", "web", "Running", vec![web]),
            PodDoc("old", "other", old_phase, vec![web]),
        ]);
        apply(&net, &mut enforcer, &state);
        let web_ref = policy::ObjectRef::new("shop".to_string(), "web".to_string());
        assert_eq!(
            enforcer.interface_of(&web_ref).map(|(_, i)| i),
            Some(web_ifindex),
            "{old_phase}: web keeps its interface"
        );
        let old_ref = policy::ObjectRef::new("shop".to_string(), "old".to_string());
        assert_eq!(
            enforcer.interface_of(&old_ref),
            None,
            "{old_phase}: old gets none"
        );
        assert_web_enforced(&net, old_phase);
    }
    // The old pod is deleted: web's programs and record stay.
    let state = cluster(&[
        PodDoc("client", "client", "Running", vec![client]),
        PodDoc("web", "web", "Running", vec![web]),
    ]);
    let report = apply(&net, &mut enforcer, &state);
    assert!(
        report.detached.is_empty(),
        "nothing detached: {:?}",
        report.detached
    );
    assert!(
        enforcer
            .datapath()
            .attached_ifindexes()
            .contains(&web_ifindex)
    );
    assert_web_enforced(&net, "after the old pod is deleted");
}

#[test]
fn a_pod_seen_before_its_interface_is_bound_when_the_interface_appears() {
    for mode in [EnforcingMode::Standard, EnforcingMode::Strict] {
        let (net, mut enforcer) = client_and_web(mode);
        let (client, web) = (net.pods[0].ipv4, net.pods[1].ipv4);
        let late_ip: IpAddr = "10.200.0.60".parse().unwrap();
        let state = cluster(&[
            PodDoc("client", "client", "Running", vec![client]),
            PodDoc("web", "web", "Running", vec![web]),
            PodDoc("late", "web", "Pending", vec![late_ip]),
        ]);
        let report = apply(&net, &mut enforcer, &state);
        let late_ref = policy::ObjectRef::new("shop".to_string(), "late".to_string());
        assert_eq!(report.without_interface, std::slice::from_ref(&late_ref));
        assert_eq!(enforcer.unbound_pods(), std::slice::from_ref(&late_ref));

        // The CNI wires the pod; the link notification wakes the enforcer.
        let mut events = {
            let _in_node = net.node.enter().unwrap();
            LinkEvents::subscribe().expect("link notifications")
        };
        let late_ns = NetNs::create(&unique_name("npp")).unwrap();
        let late_if = cni_name("late");
        let link = wire_pod(
            &net.node,
            &late_ns,
            &PodSpec {
                host_if: &late_if,
                ipv4: Some(Ipv4Addr::new(10, 200, 0, 60)),
                ipv6: None,
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !events.wait(Duration::from_millis(200)).unwrap() {
            assert!(Instant::now() < deadline, "no link notification");
        }
        let report = {
            let _in_node = net.node.enter().unwrap();
            enforcer.rebind().expect("rebind")
        };
        assert_eq!(report.attached, std::slice::from_ref(&late_if));
        assert!(report.without_interface.is_empty());
        assert!(enforcer.unbound_pods().is_empty());
        let record = enforcer
            .datapath()
            .maps()
            .pods()
            .into_iter()
            .find(|(i, _)| *i == link.host_ifindex)
            .map(|(_, r)| r)
            .expect("the late pod has its record");
        assert_eq!(
            record.ingress_state, STATE_POLICIES_APPLIED,
            "{mode:?}: isolated by web-8080"
        );
        if mode == EnforcingMode::Strict {
            // Default-deny, or isolated with only the node-local rule: never open.
            assert_ne!(
                record.egress_state, STATE_DEFAULT_ALLOW,
                "strict: egress closed"
            );
        }
        // Real traffic: the policy holds on the late pod's interface.
        let late_server = Listener::start(&late_ns, SocketAddr::new(late_ip, 8081));
        let allowed_port = Listener::start(&late_ns, SocketAddr::new(late_ip, 8080));
        let client_ns = &net.pods[0].ns;
        assert!(
            !connects_from(client_ns, SocketAddr::new(late_ip, 8081)),
            "{mode:?}: client -> late:8081 denied"
        );
        if mode == EnforcingMode::Standard {
            assert!(
                connects_from(client_ns, SocketAddr::new(late_ip, 8080)),
                "client -> late:8080 allowed"
            );
        }
        drop((late_server, allowed_port));

        // The interface goes (the pod's sandbox is removed): the binding goes with it,
        // and the pod waits for a new one.
        drop(late_ns);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let report = {
                let _in_node = net.node.enter().unwrap();
                enforcer.rebind().expect("rebind")
            };
            if report.detached == std::slice::from_ref(&late_if) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the vanished interface was never let go"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(enforcer.unbound_pods(), [late_ref]);
        assert!(
            !enforcer
                .datapath()
                .maps()
                .pods()
                .iter()
                .any(|(i, _)| *i == link.host_ifindex),
            "no record left at the old interface"
        );
    }
}
