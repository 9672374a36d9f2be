//! The README's main job, checked: the Stars demo's reachability after every step
//! equals what the EKS user guide says, in both address families.

mod common;

use std::collections::BTreeSet;

use agent::lab::probe::Family;

const UI: &str = "management-ui/management-ui";
const CLIENT: &str = "client/client";
const FRONTEND: &str = "stars/frontend";
const BACKEND: &str = "stars/backend";
const ALL: [&str; 4] = [UI, CLIENT, FRONTEND, BACKEND];

/// Who reaches `to` after each step, written from the guide.
fn expected(step: usize, to: &str) -> BTreeSet<&'static str> {
    let others = |to: &str| {
        ALL.iter()
            .copied()
            .filter(|p| *p != to)
            .collect::<BTreeSet<_>>()
    };
    let set = |v: &[&'static str]| v.iter().copied().collect::<BTreeSet<_>>();
    match (step, to) {
        // Nothing selects the management UI: it stays open throughout.
        (_, UI) => others(UI),
        (0, _) => others(to),
        (1, _) => set(&[]),
        (2, _) => set(&[UI]),
        (3, BACKEND) => set(&[UI, FRONTEND]),
        (3, _) => set(&[UI]),
        (4, BACKEND) => set(&[UI, FRONTEND]),
        (4, FRONTEND) => set(&[UI, CLIENT]),
        (4, CLIENT) => set(&[UI]),
        _ => unreachable!(),
    }
}

#[test]
fn stars_demo_matches_the_guide_at_every_step() {
    let lab = common::LabDir::new("stars");
    let reports =
        agent::demo::run(&common::binary(), lab.path(), |_, _| {}).expect("the demo runs");
    assert_eq!(reports.len(), 5);
    let mut checked_ui_to_client_9000 = 0;
    for (step, report) in reports.iter().enumerate() {
        for family in [Family::IPv4, Family::IPv6] {
            for to in ALL {
                let reached: BTreeSet<&str> = report
                    .probes
                    .iter()
                    .filter(|p| p.to == to && p.family == family && p.connected)
                    .map(|p| {
                        ALL.iter()
                            .copied()
                            .find(|a| *a == p.from)
                            .expect("known pod")
                    })
                    .collect();
                assert_eq!(
                    reached,
                    expected(step, to),
                    "step {} ({}), {family:?}, reaching {to}",
                    step + 1,
                    report.title
                );
            }
            let probed = report.probes.iter().filter(|p| p.family == family).count();
            assert_eq!(probed, 12, "every ordered pair probed once per family");
        }
        let ui_client = report
            .probes
            .iter()
            .find(|p| p.from == UI && p.to == CLIENT && p.port == 9000 && p.family == Family::IPv4)
            .expect("UI -> client:9000 probed");
        if step >= 2 {
            assert!(
                ui_client.connected,
                "step {}: management-ui reaches client on 9000",
                step + 1
            );
            checked_ui_to_client_9000 += 1;
        }
        // The step's flow-log lines name pods and namespaces.
        assert!(
            !report.flow_lines.is_empty(),
            "step {} produced flow-log lines",
            step + 1
        );
        if step >= 1 {
            let deny = report
                .flow_lines
                .iter()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
                .find(|v| v["Verdict"] == "DENY" && v["Proto"] == "TCP")
                .expect("a DENY line once policies isolate pods");
            assert!(
                deny["Dest Namespace"]
                    .as_str()
                    .is_some_and(|n| n == "stars" || n == "client"),
                "{deny}"
            );
            assert!(!deny["Src Pod"].as_str().unwrap_or("").is_empty(), "{deny}");
        }
    }
    assert_eq!(checked_ui_to_client_9000, 3);
    for step in [3usize, 4] {
        let allowed_by_policy = reports[step]
            .flow_lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .any(|v| {
                v["Verdict"] == "ACCEPT"
                    && v["Policy"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("stars/"))
            });
        assert!(
            allowed_by_policy,
            "step {}: an ACCEPT line names its stars policy",
            step + 1
        );
    }
}
