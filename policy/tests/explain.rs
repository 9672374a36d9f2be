//! `explain` on the Stars demo (every step, both families, against the guide) and on
//! crafted cases: the allowing rule and its peer entry, the isolating policies,
//! addresses that are or are not pods, host-network pods, strict mode, and input
//! errors naming the input.

mod stars;

use std::collections::BTreeSet;
use std::net::IpAddr;

use policy::explain::{
    Endpoint, ExplainError, Explainer, NotEnforced, PeerEntry, PolicyMode, Reason, Target,
    parse_source,
};
use policy::{Direction, EnforcingMode, ObjectRef, Protocol};

fn pod(key: &str) -> Endpoint {
    Endpoint::Pod(stars::pod_ref(key))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

#[test]
fn stars_reachability_matches_the_guide_at_every_step_in_both_families() {
    for step in 0..5 {
        let explainer = Explainer::new(&stars::state(step), EnforcingMode::Standard);
        for (to, port) in stars::PODS {
            for v4 in [true, false] {
                let reached: BTreeSet<&str> = stars::PODS
                    .iter()
                    .map(|(from, _)| *from)
                    .filter(|from| *from != to)
                    .filter(|from| {
                        let found = explainer
                            .explain(&pod(from), &pod(to), Protocol::Tcp, port)
                            .expect("explained");
                        assert_eq!(found.len(), 2, "one explanation per family");
                        found
                            .iter()
                            .find(|e| e.from.ip.is_ipv4() == v4)
                            .expect("family")
                            .allowed()
                    })
                    .collect();
                assert_eq!(
                    reached,
                    stars::expected(step, to),
                    "step {step}, reaching {to}:{port}, ipv4={v4}"
                );
            }
        }
    }
}

#[test]
fn an_allowed_connection_names_the_rule_its_peer_entry_and_the_prefix() {
    let explainer = Explainer::new(&stars::state(4), EnforcingMode::Standard);
    let found = explainer
        .explain(
            &pod(stars::CLIENT),
            &pod(stars::FRONTEND),
            Protocol::Tcp,
            80,
        )
        .unwrap();
    let v4 = found.iter().find(|e| e.from.ip.is_ipv4()).unwrap();
    assert!(v4.allowed());
    assert_eq!(v4.egress.reason, Reason::DefaultAllow);
    assert!(
        v4.egress.selected_by.is_empty(),
        "nothing selects client for egress"
    );
    let Reason::Allowed(rule) = &v4.ingress.reason else {
        panic!("allowed by a rule: {:?}", v4.ingress.reason)
    };
    assert_eq!(rule.rule.policy, ObjectRef::new("stars", "frontend-policy"));
    assert_eq!(rule.rule.direction, Direction::Ingress);
    assert_eq!(rule.rule.rule_index, 0);
    assert_eq!(rule.peer, PeerEntry::Index(0));
    assert_eq!(rule.prefix, "10.0.3.1/32".parse().unwrap());
    let selected: Vec<String> = v4
        .ingress
        .selected_by
        .iter()
        .map(|s| {
            assert_eq!(s.mode, PolicyMode::Enforce);
            s.policy.to_string()
        })
        .collect();
    assert_eq!(
        selected,
        [
            "stars/allow-ui",
            "stars/default-deny",
            "stars/frontend-policy"
        ]
    );
    let text = v4.to_string();
    assert!(text.contains("ALLOWED"), "{text}");
    assert!(
        text.contains("by stars/frontend-policy ingress rule 0, from[0]"),
        "{text}"
    );
}

#[test]
fn a_denied_connection_names_the_isolating_policies() {
    let explainer = Explainer::new(&stars::state(4), EnforcingMode::Standard);
    let found = explainer
        .explain(
            &pod(stars::CLIENT),
            &pod(stars::BACKEND),
            Protocol::Tcp,
            6379,
        )
        .unwrap();
    for e in &found {
        assert!(!e.allowed());
        assert!(e.egress.allowed, "the client's egress is open");
        assert_eq!(e.ingress.reason, Reason::NoRuleMatched);
        let isolating: Vec<String> = e
            .ingress
            .isolated_by()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            isolating,
            [
                "stars/allow-ui",
                "stars/backend-policy",
                "stars/default-deny"
            ]
        );
        assert!(
            e.to_string()
                .contains("isolated by: stars/allow-ui (enforce)")
        );
    }
    // The right port from the right peer passes; the wrong port does not.
    let ok = explainer
        .explain(
            &pod(stars::FRONTEND),
            &pod(stars::BACKEND),
            Protocol::Tcp,
            6379,
        )
        .unwrap();
    assert!(ok.iter().all(|e| e.allowed()));
    let wrong_port = explainer
        .explain(
            &pod(stars::FRONTEND),
            &pod(stars::BACKEND),
            Protocol::Tcp,
            6380,
        )
        .unwrap();
    assert!(wrong_port.iter().all(|e| !e.allowed()));
    let udp = explainer
        .explain(
            &pod(stars::FRONTEND),
            &pod(stars::BACKEND),
            Protocol::Udp,
            6379,
        )
        .unwrap();
    assert!(udp.iter().all(|e| !e.allowed()), "the rule is TCP only");
}

#[test]
fn a_bare_address_has_no_enforcement_and_a_pod_address_is_the_pod() {
    let explainer = Explainer::new(&stars::state(4), EnforcingMode::Standard);
    let outside = explainer
        .explain(
            &Endpoint::Ip(ip("203.0.113.9")),
            &pod(stars::FRONTEND),
            Protocol::Tcp,
            80,
        )
        .unwrap();
    assert_eq!(outside.len(), 1, "an IPv4 address fixes the family");
    let e = &outside[0];
    assert_eq!(e.egress.reason, Reason::NotEnforced(NotEnforced::NotAPod));
    assert!(e.egress.allowed && e.egress.pod.is_none());
    assert!(
        !e.ingress.allowed,
        "frontend only admits the client namespace"
    );

    // The client's IPv6 address stands for the client pod.
    let by_address = explainer
        .explain(
            &Endpoint::Ip(ip("fd00::3:1")),
            &pod(stars::FRONTEND),
            Protocol::Tcp,
            80,
        )
        .unwrap();
    assert_eq!(by_address[0].from.pod, Some(stars::pod_ref(stars::CLIENT)));
    assert!(by_address[0].allowed());
    // Pod to an address outside: only the pod's egress decides.
    let out = explainer
        .explain(
            &pod(stars::FRONTEND),
            &Endpoint::Ip(ip("fd00:99::1")),
            Protocol::Udp,
            53,
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].ingress.reason,
        Reason::NotEnforced(NotEnforced::NotAPod)
    );
    assert!(out[0].allowed());
}

const CRAFTED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: w, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: shop, labels: {app: web}}
spec: {hostNetwork: true}
status: {phase: Running, podIP: 192.168.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: shop, labels: {app: job}}
status: {phase: Succeeded, podIP: 10.1.0.9}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: none}}}, {ipBlock: {cidr: 10.9.0.0/16, except: [10.9.1.0/24]}}]
      ports: [{port: 443}]
"#;

#[test]
fn egress_ip_block_rules_name_their_entry_and_except_holes_deny() {
    let state = policy::load_str("crafted.yaml", CRAFTED).unwrap();
    let explainer = Explainer::new(&state, EnforcingMode::Standard);
    let web = Endpoint::Pod(ObjectRef::new("shop", "web"));
    let allowed = explainer
        .explain(&web, &Endpoint::Ip(ip("10.9.7.7")), Protocol::Tcp, 443)
        .unwrap();
    let Reason::Allowed(rule) = &allowed[0].egress.reason else {
        panic!("{:?}", allowed[0].egress.reason)
    };
    assert_eq!(rule.peer, PeerEntry::Index(1), "to[1], the ipBlock");
    assert_eq!(rule.prefix, "10.9.0.0/16".parse().unwrap());
    let hole = explainer
        .explain(&web, &Endpoint::Ip(ip("10.9.1.7")), Protocol::Tcp, 443)
        .unwrap();
    assert!(!hole[0].allowed());
    assert_eq!(hole[0].egress.reason, Reason::NoRuleMatched);
    assert_eq!(
        hole[0].egress.isolated_by(),
        [&ObjectRef::new("shop", "web-egress")]
    );
}

#[test]
fn host_network_and_finished_pods_are_not_enforced() {
    let state = policy::load_str("crafted.yaml", CRAFTED).unwrap();
    let explainer = Explainer::new(&state, EnforcingMode::Strict);
    let host = Endpoint::Pod(ObjectRef::new("shop", "agent"));
    let e = &explainer
        .explain(&host, &Endpoint::Ip(ip("10.200.0.1")), Protocol::Tcp, 443)
        .unwrap()[0];
    assert_eq!(
        e.egress.reason,
        Reason::NotEnforced(NotEnforced::HostNetwork)
    );
    assert!(e.allowed(), "a policy selecting it changes nothing");
    let job = Endpoint::Pod(ObjectRef::new("shop", "job"));
    let e = &explainer
        .explain(&job, &Endpoint::Ip(ip("10.200.0.1")), Protocol::Tcp, 443)
        .unwrap()[0];
    assert_eq!(e.egress.reason, Reason::NotEnforced(NotEnforced::Finished));
}

#[test]
fn strict_mode_denies_what_no_policy_selects() {
    let explainer = Explainer::new(&stars::state(0), EnforcingMode::Strict);
    let found = explainer
        .explain(&pod(stars::UI), &pod(stars::CLIENT), Protocol::Tcp, 9000)
        .unwrap();
    for e in &found {
        assert!(!e.allowed());
        assert_eq!(e.egress.reason, Reason::StrictDefaultDeny);
        assert_eq!(e.ingress.reason, Reason::StrictDefaultDeny);
        assert!(e.egress.isolated_by().is_empty());
        assert!(
            e.to_string()
                .contains("strict mode and no policy selects it")
        );
    }
    // Standard mode: the same state is open.
    let standard = Explainer::new(&stars::state(0), EnforcingMode::Standard);
    assert!(
        standard
            .explain(&pod(stars::UI), &pod(stars::CLIENT), Protocol::Tcp, 9000)
            .unwrap()
            .iter()
            .all(|e| e.allowed())
    );
}

#[test]
fn targets_parse_pods_addresses_ports_and_protocols() {
    let pod_t = |ns: &str, name: &str| Endpoint::Pod(ObjectRef::new(ns, name));
    let cases: [(&str, Endpoint, Option<u16>, Protocol); 8] = [
        (
            "stars/backend",
            pod_t("stars", "backend"),
            None,
            Protocol::Tcp,
        ),
        (
            "stars/backend:6379",
            pod_t("stars", "backend"),
            Some(6379),
            Protocol::Tcp,
        ),
        (
            "stars/backend:53/udp",
            pod_t("stars", "backend"),
            Some(53),
            Protocol::Udp,
        ),
        (
            "10.1.2.3",
            Endpoint::Ip(ip("10.1.2.3")),
            None,
            Protocol::Tcp,
        ),
        (
            "10.1.2.3:80/SCTP",
            Endpoint::Ip(ip("10.1.2.3")),
            Some(80),
            Protocol::Sctp,
        ),
        ("fd00::3", Endpoint::Ip(ip("fd00::3")), None, Protocol::Tcp),
        (
            "[fd00::3]:80/TCP",
            Endpoint::Ip(ip("fd00::3")),
            Some(80),
            Protocol::Tcp,
        ),
        (
            "[fd00::3]",
            Endpoint::Ip(ip("fd00::3")),
            None,
            Protocol::Tcp,
        ),
    ];
    for (input, endpoint, port, protocol) in cases {
        let t = Target::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(
            t,
            Target {
                endpoint,
                port,
                protocol
            },
            "{input}"
        );
    }
    for bad in [
        "",
        "backend",
        "stars/backend:0",
        "stars/backend:70000",
        "stars/backend:80/icmp",
        "[10.1.2.3]:80",
        "[fd00::3:80",
        "a/b/c:80",
    ] {
        let err = Target::parse(bad).expect_err(bad);
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    assert_eq!(
        parse_source("client/client").unwrap(),
        pod_t("client", "client")
    );
    let err = parse_source("client/client:80").unwrap_err();
    assert!(err.to_string().contains("takes no port"), "{err}");
}

#[test]
fn unknown_pods_missing_ports_and_foreign_families_are_errors_naming_the_input() {
    let explainer = Explainer::new(&stars::state(1), EnforcingMode::Standard);
    let missing = Endpoint::Pod(ObjectRef::new("stars", "nope"));
    assert_eq!(
        explainer
            .explain(&missing, &pod(stars::UI), Protocol::Tcp, 80)
            .unwrap_err(),
        ExplainError::UnknownPod {
            pod: ObjectRef::new("stars", "nope")
        }
    );
    let err = explainer
        .explain(
            &Endpoint::Ip(ip("10.0.0.1")),
            &Endpoint::Ip(ip("fd00::1")),
            Protocol::Tcp,
            80,
        )
        .unwrap_err();
    assert!(err.to_string().contains("10.0.0.1 -> fd00::1"), "{err}");
    // No port: the pod's declared ports; an address needs one.
    let to = Target::parse(stars::BACKEND).unwrap();
    assert_eq!(
        explainer.ports_of(stars::BACKEND, &to).unwrap(),
        [(Protocol::Tcp, 6379)]
    );
    let to = Target::parse("203.0.113.1").unwrap();
    let err = explainer.ports_of("203.0.113.1", &to).unwrap_err();
    assert!(err.to_string().contains("\"203.0.113.1\""), "{err}");
}

const AUDITED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
status: {phase: Running, podIP: 10.1.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web, namespace: shop, annotations: {netpol-agent.dev/audit: "true"}}
spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 8080}]}]}
"#;

#[test]
fn audit_mode_policies_pass_what_they_would_deny_and_are_named() {
    let state = policy::load_str("audit.yaml", AUDITED).unwrap();
    let explainer = Explainer::new(&state, EnforcingMode::Standard);
    let web = Endpoint::Pod(ObjectRef::new("shop", "web"));
    let client = Endpoint::Pod(ObjectRef::new("shop", "client"));
    let e = &explainer.explain(&client, &web, Protocol::Tcp, 80).unwrap()[0];
    assert!(e.allowed(), "audit never drops");
    assert_eq!(e.ingress.reason, Reason::Audited);
    assert_eq!(e.ingress.selected_by[0].mode, PolicyMode::Audit);
    assert_eq!(
        e.ingress.isolated_by(),
        [&ObjectRef::new("shop", "deny-web")],
        "named as the AUDIT line names it"
    );
    assert!(e.to_string().contains("AUDIT: no rule admits this"), "{e}");
    // What the rule admits is an ordinary ACCEPT.
    let ok = &explainer
        .explain(&client, &web, Protocol::Tcp, 8080)
        .unwrap()[0];
    assert!(matches!(ok.ingress.reason, Reason::Allowed(_)));
    assert!(ok.ingress.isolated_by().is_empty());
}
