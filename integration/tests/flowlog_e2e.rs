//! End to end with real traffic: pods in namespaces, policies from YAML applied by the
//! agent's enforcer, real TCP and UDP connections, and the flow-log file written by
//! the pipeline thread. The file must hold exactly the expected lines (verdicts, pods,
//! namespaces, policy names; valid JSON; keys in the documented order), and the
//! accounting identities must hold after a flush.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use agent::flowlog::FlowLogThread;
use datapath::AttachMode;
use datapath_common::VERDICT_DENY;
use enforcer::Enforcer;
use exporter::{EnrichmentSnapshot, Pipeline, PipelineConfig, snapshot_handle};
use integration::podnet::*;
use policy::{EnforcingMode, ResolveOptions};

/// (src ip, src port, dest ip, dest port, proto, direction, verdict, policy) of a line.
type LineKey = (
    String,
    u16,
    String,
    u16,
    &'static str,
    &'static str,
    &'static str,
    String,
);

const KEYS: [&str; 22] = [
    "level",
    "timestamp",
    "logger",
    "msg",
    "Src IP",
    "Src Port",
    "Dest IP",
    "Dest Port",
    "Proto",
    "Verdict",
    "Direction",
    "Src Pod",
    "Src Namespace",
    "Dest Pod",
    "Dest Namespace",
    "Policy",
    "Count",
    "Bytes",
    "Node",
    "Peer Node",
    "Isolated By",
    "Tier",
];

fn cluster_yaml(net: &PodNet) -> String {
    let pod = |i: usize, name: &str, app: &str| {
        let p = &net.pods[i];
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}, annotations: {{netpol-agent.dev/interface: {}}}}}\nspec: {{nodeName: node-1, containers: [{{name: c, image: x}}]}}\nstatus: {{phase: Running, podIPs: [{{ip: {}}}, {{ip: {}}}]}}\n---\n",
            p.link.host_if, p.ipv4, p.ipv6
        )
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}{}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-client, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n    - from: [{{podSelector: {{matchLabels: {{app: client}}}}}}]\n      ports: [{{port: 8080}}, {{protocol: UDP, port: 9090}}]\n",
        pod(0, "client", "client"),
        pod(1, "web", "web")
    )
}

#[test]
fn real_connections_become_exactly_the_expected_lines() {
    let net = PodNet::new(2, AttachMode::Tcx);
    let cluster = policy::load_str("cluster.yaml", &cluster_yaml(&net)).expect("cluster YAML");
    let dp = net.load_adopting_only();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("network-policy-agent.log");
    let snapshot = snapshot_handle(EnrichmentSnapshot {
        node_name: "node-1".into(),
        ..Default::default()
    });
    let mut dp = dp;
    let reader = dp.take_event_reader().unwrap();
    let options = ResolveOptions {
        node_name: "node-1".into(),
        node_addresses: Vec::new(),
        mode: EnforcingMode::Standard,
    };
    let mut enforcer = {
        let _in_node = net.node.enter().unwrap();
        let mut e = Enforcer::new(dp, options, snapshot.clone());
        let report = e.apply(&cluster).expect("apply");
        assert_eq!(report.attached.len(), 2);
        e
    };
    let pipeline = Pipeline::new(PipelineConfig::default(), snapshot, &log).unwrap();
    let stats = pipeline.shared_stats();
    let flow_log = FlowLogThread::spawn(reader, pipeline, Duration::from_millis(50)).unwrap();
    let _servers = Servers::start(&net, 1, &[8080, 8081], &[9090, 9091]);

    let timeout = Duration::from_millis(700);
    let web4 = net.pods[1].ipv4;
    let mut expected: BTreeSet<LineKey> = BTreeSet::new();
    let mut expect = |local: SocketAddr, dst: SocketAddr, proto: &'static str, denied: bool| {
        let (src, dst_s) = (local.ip().to_string(), dst.ip().to_string());
        // Leaving the client: its egress is open.
        expected.insert((
            src.clone(),
            local.port(),
            dst_s.clone(),
            dst.port(),
            proto,
            "egress",
            "ACCEPT",
            "default-allow".into(),
        ));
        let (verdict, policy) = if denied {
            ("DENY", "no-rule-matched".to_string())
        } else {
            ("ACCEPT", "shop/allow-client".to_string())
        };
        expected.insert((
            src,
            local.port(),
            dst_s,
            dst.port(),
            proto,
            "ingress",
            verdict,
            policy,
        ));
    };
    let (local, _s) =
        tcp_connect(&net, 0, SocketAddr::new(web4, 8080), timeout).expect("allowed TCP");
    expect(local, SocketAddr::new(web4, 8080), "TCP", false);
    let (local, ok) = udp_echo(&net, 0, SocketAddr::new(web4, 9090), timeout);
    assert!(ok);
    expect(local, SocketAddr::new(web4, 9090), "UDP", false);
    let (local, ok) = udp_echo(&net, 0, SocketAddr::new(web4, 9091), timeout);
    assert!(!ok);
    expect(local, SocketAddr::new(web4, 9091), "UDP", true);
    let web6 = net.pods[1].ipv6;
    let (local, _s6) =
        tcp_connect(&net, 0, SocketAddr::new(web6, 8080), timeout).expect("allowed TCP over IPv6");
    expect(local, SocketAddr::new(web6, 8080), "TCP", false);

    // Flush folds until the fold window has passed and nothing stays pending.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        enforcer.datapath().flush_folds().unwrap();
        if enforcer.datapath().maps().pending_fold_packets() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "folds still pending after a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let counters = loop {
        let c = enforcer.datapath().maps().counters().unwrap();
        if stats.pipeline.load().events_received >= c.events_submitted || Instant::now() > deadline
        {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_reader, pipeline) = flow_log.stop().expect("flow-log thread");
    let p = pipeline.counters();
    drop(pipeline);

    let text = std::fs::read_to_string(&log).unwrap();
    let mut got = BTreeSet::new();
    let mut deny_count = 0u64;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(keys_in_order(line), KEYS, "keys in the documented order");
        assert_eq!(v["Node"], "node-1");
        // Only NetworkPolicies here: their rules (and their isolation when none
        // matched) decide, or the unisolated pod's default.
        let tier = match v["Policy"].as_str().unwrap() {
            "default-allow" => "DEFAULT",
            _ => "NETWORK_POLICY",
        };
        assert_eq!(v["Tier"], tier, "the deciding tier: {line}");
        if v["Verdict"] == "DENY" {
            deny_count += v["Count"].as_u64().unwrap();
            assert_eq!(
                v["Isolated By"], "shop/allow-client",
                "a DENY names the policy isolating web: {line}"
            );
        } else {
            assert_eq!(v["Isolated By"], "", "an ACCEPT names none: {line}");
        }
        let (src_pod, dst_pod) = (
            v["Src Pod"].as_str().unwrap(),
            v["Dest Pod"].as_str().unwrap(),
        );
        assert_eq!(
            (src_pod, dst_pod, v["Src Namespace"].as_str().unwrap()),
            ("client", "web", "shop"),
            "{line}"
        );
        got.insert((
            v["Src IP"].as_str().unwrap().to_string(),
            v["Src Port"].as_u64().unwrap() as u16,
            v["Dest IP"].as_str().unwrap().to_string(),
            v["Dest Port"].as_u64().unwrap() as u16,
            match v["Proto"].as_str().unwrap() {
                "TCP" => "TCP",
                "UDP" => "UDP",
                other => panic!("unexpected protocol {other}"),
            },
            if v["Direction"] == "egress" {
                "egress"
            } else {
                "ingress"
            },
            if v["Verdict"] == "DENY" {
                "DENY"
            } else {
                "ACCEPT"
            },
            v["Policy"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(got, expected, "the file holds exactly the expected lines");
    assert_eq!(text.lines().count(), expected.len(), "and each once");

    // Accounting: everything the kernel submitted became a line or was counted lost or
    // filtered; every denied packet is in a DENY line's Count or counted as lost/pending.
    assert_eq!(counters.events_submitted, p.events_received);
    assert_eq!(
        p.events_received,
        p.lines_written
            + p.lines_lost_no_space
            + p.lines_lost_write_error
            + p.events_filtered_scope
    );
    let denied_packets =
        counters.packets[0][VERDICT_DENY as usize] + counters.packets[1][VERDICT_DENY as usize];
    let pending = enforcer.datapath().maps().pending_fold_packets();
    assert_eq!(
        denied_packets,
        deny_count + counters.denied_packets_lost + pending
    );
    assert_eq!(counters.events_lost, 0);
    drop(Arc::new(()));
}

/// The top-level keys of a JSON object line in the order they appear (serde_json's map
/// sorts them).
fn keys_in_order(line: &str) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                keys.push(k);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    serde::Deserializer::deserialize_map(&mut de, Keys).expect("a JSON object")
}
