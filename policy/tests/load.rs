//! Loading manifests: a valid multi-document file and directory, and a corpus of
//! broken inputs whose errors must name the file, the document and the field.

use std::net::IpAddr;

use policy::{
    Direction, LoadError, Operator, Peer, PodPhase, PortRef, Protocol, load_dir, load_str,
};

const GOOD: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels: {team: red}
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels: {app: a}
  annotations: {netpol-agent.dev/interface: veth-a}
spec:
  nodeName: node-1
  containers:
  - name: c
    image: nginx
    ports:
    - {name: serve-80, containerPort: 80}
    - {name: dns, containerPort: 53, protocol: UDP}
status:
  phase: Running
  podIP: 10.0.0.5
  podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector:
    matchExpressions: [{key: app, operator: In, values: [a, b]}]
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: red}}
      podSelector: {}
    - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.2.0/24]}
    ports:
    - {port: serve-80}
    - {protocol: UDP, port: 1000, endPort: 2000}
  egress:
  - {}
"#;

#[test]
fn a_multi_document_file_loads_every_object_with_its_fields() {
    let state = load_str("good.yaml", GOOD).expect("valid manifests");
    assert_eq!(state.namespaces["x"].labels["team"], "red");
    let pod = &state.pods[&policy::ObjectRef::new("x", "a")];
    assert_eq!(
        pod.ips,
        vec![
            "10.0.0.5".parse::<IpAddr>().unwrap(),
            "fd00::5".parse::<IpAddr>().unwrap()
        ]
    );
    assert_eq!(pod.node_name.as_deref(), Some("node-1"));
    assert_eq!(pod.phase, PodPhase::Running);
    assert_eq!(pod.interface.as_deref(), Some("veth-a"));
    assert_eq!(pod.named_port("dns", Protocol::Udp), Some(53));
    assert_eq!(pod.named_port("dns", Protocol::Tcp), None);
    let p = &state.policies[&policy::ObjectRef::new("x", "p")];
    assert_eq!(
        p.spec.pod_selector.match_expressions[0].operator,
        Operator::In
    );
    assert!(p.affects(Direction::Egress));
    let ingress = &p.spec.ingress[0];
    assert!(matches!(
        &ingress.peers[0],
        Peer::Pods {
            pod_selector: Some(_),
            namespace_selector: Some(_)
        }
    ));
    assert!(matches!(&ingress.peers[1], Peer::IpBlock(b) if b.except.len() == 1));
    assert_eq!(
        ingress.ports[0].port,
        Some(PortRef::Name("serve-80".into()))
    );
    assert_eq!(ingress.ports[0].protocol, Protocol::Tcp);
    assert_eq!(ingress.ports[1].end_port, Some(2000));
    assert!(p.spec.egress[0].peers.is_empty() && p.spec.egress[0].ports.is_empty());
}

#[test]
fn a_directory_loads_yaml_files_in_name_order_and_ignores_others() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    let state = load_dir(dir.path()).unwrap();
    assert_eq!(state.namespaces.len(), 2);
    assert_eq!(state.policies.len(), 1);

    std::fs::write(
        dir.path().join("c.yaml"),
        "---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    )
    .unwrap();
    let err = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("c.yaml doc 2: Namespace x is defined twice"),
        "{err}"
    );
}

#[test]
fn a_missing_directory_is_an_io_error_naming_it() {
    let err = load_dir("/nonexistent/policies").unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(err.to_string().starts_with("/nonexistent/policies"));
}

fn policy_doc(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec:\n{spec}"
    )
}

/// (input, the exact error message expected from `load_str("policies/x.yaml", input)`).
fn broken_corpus() -> Vec<(String, &'static str)> {
    let p = policy_doc;
    vec![
        (
            p("  podSelector: {}\n  ingress:\n  - ports:\n    - port: 80\n    - port: Web_Port\n"),
            r#"policies/x.yaml doc 2: spec.ingress[0].ports[1].port: "Web_Port" is neither a number nor a valid port name"#,
        ),
        (p("  podSelector: {}\n  ingress:\n  - ports: [{port: 0}]\n"), "policies/x.yaml doc 2: spec.ingress[0].ports[0].port: 0 is not a port number (1-65535)"),
        (p("  podSelector: {}\n  ingress:\n  - ports: [{port: 70000}]\n"), "policies/x.yaml doc 2: spec.ingress[0].ports[0].port: 70000 is not a port number (1-65535)"),
        (p("  podSelector: {}\n  ingress:\n  - ports: [{port: http--x}]\n"), r#"policies/x.yaml doc 2: spec.ingress[0].ports[0].port: "http--x" is neither a number nor a valid port name"#),
        (p("  podSelector: {}\n  egress:\n  - ports: [{protocol: ICMP}]\n"), "policies/x.yaml doc 2: spec.egress[0].ports[0].protocol: unknown variant `ICMP`, expected one of `TCP`, `UDP`, `SCTP`"),
        (p("  podSelector: {}\n  egress:\n  - ports: [{port: 90, endPort: 80}]\n"), "policies/x.yaml doc 2: spec.egress[0].ports[0].endPort: 80 is below port 90"),
        (p("  podSelector: {}\n  egress:\n  - ports: [{port: http, endPort: 80}]\n"), "policies/x.yaml doc 2: spec.egress[0].ports[0].endPort: endPort needs a numeric port"),
        (p("  podSelector: {}\n  egress:\n  - ports: [{endPort: 80}]\n"), "policies/x.yaml doc 2: spec.egress[0].ports[0].endPort: endPort needs port"),
        (p("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/33}}]\n"), r#"policies/x.yaml doc 2: spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not a CIDR"#),
        (p("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]\n"), "policies/x.yaml doc 2: spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/24 is not strictly inside cidr 10.0.0.0/16"),
        (p("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/16, except: [\"fd00::/64\"]}}]\n"), "policies/x.yaml doc 2: spec.ingress[0].from[0].ipBlock.except[0]: fd00::/64 is not strictly inside cidr 10.0.0.0/16"),
        (p("  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/16}, podSelector: {}}]\n"), "policies/x.yaml doc 2: spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector"),
        (p("  podSelector: {}\n  ingress:\n  - from: [{}]\n"), "policies/x.yaml doc 2: spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock"),
        (p("  podSelector:\n    matchExpressions: [{key: app, operator: In}]\n"), "policies/x.yaml doc 2: spec.podSelector.matchExpressions[0].values: In needs at least one value"),
        (p("  podSelector:\n    matchExpressions: [{key: app, operator: Exists, values: [a]}]\n"), "policies/x.yaml doc 2: spec.podSelector.matchExpressions[0].values: Exists takes no values"),
        (p("  podSelector:\n    matchExpressions: [{key: app, operator: Equals, values: [a]}]\n"), "policies/x.yaml doc 2: spec.podSelector.matchExpressions[0].operator: unknown variant `Equals`, expected one of `In`, `NotIn`, `Exists`, `DoesNotExist`"),
        (p("  podSelektor: {}\n"), "policies/x.yaml doc 2: spec.podSelektor: unknown field `podSelektor`, expected one of `podSelector`, `ingress`, `egress`, `policyTypes`"),
        (p("  ingress: []\n"), "policies/x.yaml doc 2: spec: missing field `podSelector`"),
        (p("  podSelector: {}\n  policyTypes: [Ingress, Sideways]\n"), "policies/x.yaml doc 2: spec.policyTypes[1]: unknown variant `Sideways`, expected `Ingress` or `Egress`"),
        (p("  podSelector: {}\n  policyTypes: [Egress, Egress]\n"), "policies/x.yaml doc 2: spec.policyTypes[1]: Egress is listed twice"),
        (p("  podSelector: {matchLabels: {app: [a]}}\n"), "policies/x.yaml doc 2: spec.podSelector.matchLabels.app: invalid type: sequence, expected a string"),
        (p("  podSelector: {}\n  ingress:\n  - form: []\n"), "policies/x.yaml doc 2: spec.ingress[0].form: unknown field `form`, expected `from` or `ports`"),
        ("kind: Namespace\nmetadata: {name: x}\n".to_owned(), "policies/x.yaml doc 1: apiVersion: missing"),
        ("apiVersion: v1\nmetadata: {name: x}\n".to_owned(), "policies/x.yaml doc 1: kind: missing"),
        ("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: x}\n".to_owned(), "policies/x.yaml doc 1: unsupported object extensions/v1beta1/NetworkPolicy (want v1 Namespace, v1 Pod or networking.k8s.io/v1 NetworkPolicy)"),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}\n".to_owned(), "policies/x.yaml doc 1: metadata.name: missing"),
        ("- just\n- a list\n".to_owned(), "policies/x.yaml doc 1: .: a document must be a mapping with apiVersion and kind"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec:\n  containers:\n  - ports: [{containerPort: 80, name: Web_Port}]\n".to_owned(),
            r#"policies/x.yaml doc 1: spec.containers[0].ports[0].name: "Web_Port" is not a valid port name"#,
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nstatus:\n  podIPs: [{ip: 10.0.0.300}]\n".to_owned(),
            "policies/x.yaml doc 1: status.podIPs[0].ip: invalid IP address syntax",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nstatus:\n  podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]\n".to_owned(),
            "policies/x.yaml doc 1: status.podIPs: at most one address per family",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nstatus: {phase: Sleeping}\n".to_owned(),
            "policies/x.yaml doc 1: status.phase: unknown variant `Sleeping`, expected one of `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`",
        ),
    ]
}

#[test]
fn every_broken_input_is_rejected_with_file_document_and_field_path() {
    let corpus = broken_corpus();
    assert!(corpus.len() >= 20);
    let mismatches: Vec<String> = corpus
        .iter()
        .filter_map(
            |(input, expected)| match load_str("policies/x.yaml", input) {
                Ok(_) => Some(format!("accepted:\n{input}")),
                Err(e) if e.to_string() != *expected => {
                    Some(format!("got      {e}\nexpected {expected}"))
                }
                Err(_) => None,
            },
        )
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn invalid_yaml_syntax_names_the_document() {
    let err = load_str(
        "policies/x.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\nkind: [unclosed\n",
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Syntax { doc: 2, .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("policies/x.yaml doc 2: invalid YAML:"),
        "{err}"
    );
}
