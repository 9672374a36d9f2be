//! The lab's view of a manifest directory: the user's Namespaces, Pods,
//! NetworkPolicies and ClusterNetworkPolicies (passed to the agent as they are), with
//! each pod given a node, addresses (unless `status.podIPs`
//! names them) and its host-side interface (named as the VPC CNI names them, with the
//! lab's prefix), written out as the agent's policy directory.
//!
//! Pod lifecycles the lab can stage:
//! - `status.phase: Succeeded` or `Failed`: the pod is written for the agent with its
//!   addresses (as the API keeps them) but not wired: no namespace, no interface. Its
//!   address may be given to a live pod too (an address reused).
//! - annotation `lab.netpol-agent.dev/wire: late`: the pod is written for the agent
//!   first and wired only once the agent reports it unbound (its interface appears
//!   after the agent saw the pod).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde_yaml::Value;

/// The node name every lab pod runs on.
pub const LAB_NODE: &str = "lab-node";
/// The host veth prefix of the lab's "CNI", passed to its agent as `--veth-prefix`.
pub const LAB_VETH_PREFIX: &str = "lab";
/// A pod annotation: `late` wires the pod after the agent has seen it.
pub const WIRE_ANNOTATION: &str = "lab.netpol-agent.dev/wire";

/// A pod as the lab wires it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabPod {
    pub namespace: String,
    pub name: String,
    pub host_if: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// (protocol, port) the pod's servers listen on.
    pub ports: Vec<(String, u16)>,
    /// Wired only after the agent reported the pod unbound.
    #[serde(default)]
    pub wire_late: bool,
}

impl LabPod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Every YAML document of `dir` (files sorted by name).
///
/// # Errors
/// Unreadable files or invalid YAML; the agent's own loader is run first, so policy
/// errors name file, document and field.
pub fn read_documents(dir: &Path) -> Result<Vec<Value>> {
    policy::load_dir(dir).with_context(|| format!("manifests in {}", dir.display()))?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .with_context(|| format!("parsing {}", file.display()))?;
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    Ok(docs)
}

fn kind(doc: &Value) -> &str {
    doc.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn meta_str<'a>(doc: &'a Value, key: &str) -> Option<&'a str> {
    doc.get("metadata")?.get(key)?.as_str()
}

/// The host interface of a lab pod: the VPC CNI's name with the lab's prefix.
pub fn host_interface_name(namespace: &str, name: &str) -> String {
    enforcer::binding::host_veth_name(LAB_VETH_PREFIX, namespace, name, 0)
}

/// A pod that has finished: the API keeps its addresses, the CNI has removed its
/// interface.
fn is_terminal(doc: &Value) -> bool {
    matches!(
        doc.get("status")
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn wire_late(doc: &Value) -> bool {
    doc.get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(WIRE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("late")
}

fn given_ips(doc: &Value) -> Vec<IpAddr> {
    let status = doc.get("status");
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.get("podIPs"))
        .and_then(Value::as_sequence)
        .map(|seq| {
            seq.iter()
                .filter_map(|e| e.get("ip")?.as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if let Some(ip) = status
        .and_then(|s| s.get("podIP"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    ips
}

fn container_ports(doc: &Value) -> Vec<(String, u16)> {
    let mut ports = Vec::new();
    let containers = doc
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_sequence);
    for c in containers.into_iter().flatten() {
        for p in c
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let Some(port) = p.get("containerPort").and_then(Value::as_u64) else {
                continue;
            };
            let protocol = p
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string();
            ports.push((protocol, port as u16));
        }
    }
    ports
}

/// Lab pods for the documents: addresses kept from `previous` (by namespace/name),
/// taken from `status.podIPs`, or allocated.
///
/// # Errors
/// Two pods given the same address.
pub fn plan_pods(docs: &[Value], previous: &[LabPod]) -> Result<Vec<LabPod>> {
    let prev: BTreeMap<String, &LabPod> = previous.iter().map(|p| (p.key(), p)).collect();
    let mut used_v4: Vec<Ipv4Addr> = Vec::new();
    let mut used_v6: Vec<Ipv6Addr> = Vec::new();
    let mut pods = Vec::new();
    let mut pending = Vec::new();
    for doc in docs.iter().filter(|d| kind(d) == "Pod" && !is_terminal(d)) {
        let name = meta_str(doc, "name").unwrap_or_default().to_string();
        let namespace = meta_str(doc, "namespace").unwrap_or("default").to_string();
        let key = format!("{namespace}/{name}");
        let mut ports = container_ports(doc);
        for default in [80, 81] {
            for proto in ["TCP", "UDP"] {
                if !ports.iter().any(|(p, n)| p == proto && *n == default) {
                    ports.push((proto.to_string(), default));
                }
            }
        }
        let given = given_ips(doc);
        let (v4, v6) = if let Some(p) = prev.get(&key) {
            (Some(p.ipv4), Some(p.ipv6))
        } else {
            (
                given.iter().find_map(|ip| {
                    if let IpAddr::V4(a) = ip {
                        Some(*a)
                    } else {
                        None
                    }
                }),
                given.iter().find_map(|ip| {
                    if let IpAddr::V6(a) = ip {
                        Some(*a)
                    } else {
                        None
                    }
                }),
            )
        };
        for a in v4.iter() {
            if used_v4.contains(a) {
                bail!("pod {key}: address {a} is given to another pod");
            }
            used_v4.push(*a);
        }
        for a in v6.iter() {
            if used_v6.contains(a) {
                bail!("pod {key}: address {a} is given to another pod");
            }
            used_v6.push(*a);
        }
        pending.push((namespace, name, v4, v6, ports, wire_late(doc)));
    }
    let mut next = 2u32;
    for (namespace, name, v4, v6, ports, wire_late) in pending {
        let ipv4 = v4.unwrap_or_else(|| {
            loop {
                let a = Ipv4Addr::new(10, 244, (next >> 8) as u8, next as u8);
                next += 1;
                if !used_v4.contains(&a) {
                    used_v4.push(a);
                    break a;
                }
            }
        });
        let ipv6 = v6.unwrap_or_else(|| {
            let suffix = u32::from(ipv4) & 0xffff;
            let a = Ipv6Addr::new(0xfd00, 0x244, 0, 0, 0, 0, 0, suffix as u16);
            used_v6.push(a);
            a
        });
        let host_if = host_interface_name(&namespace, &name);
        pods.push(LabPod {
            namespace,
            name,
            host_if,
            ipv4,
            ipv6,
            ports,
            wire_late,
        });
    }
    Ok(pods)
}

/// The documents as the agent should see them: pods on the lab node, running, with
/// their addresses (terminal pods as given). Namespaces the pods use but the directory
/// does not declare are added.
pub fn agent_documents(docs: &[Value], pods: &[LabPod]) -> Vec<Value> {
    let by_key: BTreeMap<String, &LabPod> = pods.iter().map(|p| (p.key(), p)).collect();
    let mut out = Vec::new();
    let mut namespaces: Vec<String> = docs
        .iter()
        .filter(|d| kind(d) == "Namespace")
        .filter_map(|d| meta_str(d, "name").map(str::to_string))
        .collect();
    for pod in pods {
        if !namespaces.contains(&pod.namespace) {
            namespaces.push(pod.namespace.clone());
            out.push(
                serde_yaml::from_str(&format!(
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
                    pod.namespace
                ))
                .expect("namespace YAML"),
            );
        }
    }
    for doc in docs {
        let mut doc = doc.clone();
        if kind(&doc) == "Pod" {
            let name = meta_str(&doc, "name").unwrap_or_default().to_string();
            let namespace = meta_str(&doc, "namespace").unwrap_or("default").to_string();
            if let Some(pod) = by_key.get(&format!("{namespace}/{name}")) {
                set(
                    &mut doc,
                    &["metadata", "namespace"],
                    Value::from(namespace.clone()),
                );
                set(&mut doc, &["spec", "nodeName"], Value::from(LAB_NODE));
                set(&mut doc, &["status", "phase"], Value::from("Running"));
                set(
                    &mut doc,
                    &["status", "podIP"],
                    Value::from(pod.ipv4.to_string()),
                );
                let ips: Vec<Value> = [pod.ipv4.to_string(), pod.ipv6.to_string()]
                    .into_iter()
                    .map(|ip| {
                        let mut m = serde_yaml::Mapping::new();
                        m.insert("ip".into(), ip.into());
                        Value::Mapping(m)
                    })
                    .collect();
                set(&mut doc, &["status", "podIPs"], Value::Sequence(ips));
            } else if is_terminal(&doc) {
                set(&mut doc, &["metadata", "namespace"], Value::from(namespace));
                set(&mut doc, &["spec", "nodeName"], Value::from(LAB_NODE));
            }
        }
        out.push(doc);
    }
    out
}

fn set(doc: &mut Value, path: &[&str], value: Value) {
    let mut cur = doc;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_mapping() {
            *cur = Value::Mapping(serde_yaml::Mapping::new());
        }
        let map = cur.as_mapping_mut().expect("mapping");
        if i == path.len() - 1 {
            map.insert(Value::from(*key), value);
            return;
        }
        cur = map
            .entry(Value::from(*key))
            .or_insert(Value::Mapping(serde_yaml::Mapping::new()));
    }
}

/// Writes the documents as one multi-document YAML file, atomically, with its
/// modification time set to `revision_ns` (ns since the epoch) when given: the agent's
/// policy source reports the newest modification time it read as its revision.
///
/// # Errors
/// The file cannot be written.
pub fn write_documents(path: &Path, docs: &[Value], revision_ns: Option<u64>) -> Result<()> {
    stage_documents(path, docs, revision_ns)?.commit()
}

/// A file written beside the directory it is meant for, not yet in it.
#[derive(Debug)]
#[must_use = "nothing reaches the directory until commit"]
pub struct Staged {
    staged: PathBuf,
    target: PathBuf,
}

impl Staged {
    /// Moves the file into place: the directory changes once, with the whole file.
    ///
    /// # Errors
    /// The rename fails.
    pub fn commit(self) -> Result<()> {
        std::fs::rename(&self.staged, &self.target).with_context(|| {
            format!(
                "renaming {} to {}",
                self.staged.display(),
                self.target.display()
            )
        })
    }
}

/// Writes what [`write_documents`] writes to a file next to `path`'s directory, so the
/// directory changes once, with the whole file. Nothing the agent's source reads moves
/// before then: a revision seen early would let `lab apply` return before the change
/// is in force (the source leaves files that are not YAML out of its revision too).
///
/// # Errors
/// The file cannot be written.
pub fn stage_documents(path: &Path, docs: &[Value], revision_ns: Option<u64>) -> Result<Staged> {
    let mut text = String::new();
    for doc in docs {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(doc)?);
    }
    stage_text(path, &text, revision_ns)
}

/// [`stage_documents`] for text already rendered.
///
/// # Errors
/// The file cannot be written.
pub fn stage_text(path: &Path, text: &str, revision_ns: Option<u64>) -> Result<Staged> {
    let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
        bail!("{} names no file in a directory", path.display());
    };
    let outside = dir.parent().unwrap_or(dir);
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let staged = outside.join(format!(".{dir_name}-{}.staged", file.to_string_lossy()));
    std::fs::write(&staged, text).with_context(|| format!("writing {}", staged.display()))?;
    if let Some(ns) = revision_ns {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
        std::fs::File::options()
            .write(true)
            .open(&staged)
            .and_then(|f| f.set_modified(when))
            .with_context(|| format!("setting the time of {}", staged.display()))?;
    }
    Ok(Staged {
        staged,
        target: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str) -> Vec<Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect()
    }

    #[test]
    fn pods_get_addresses_unless_given_and_keep_them_across_applies() {
        let d = docs(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x}\nstatus:\n  podIPs: [{ip: 10.9.9.9}]\n",
        );
        let pods = plan_pods(&d, &[]).unwrap();
        assert_eq!(pods[0].ipv4, Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(pods[1].ipv4, Ipv4Addr::new(10, 9, 9, 9));
        assert_eq!(
            pods[0].host_if,
            enforcer::binding::host_veth_name("lab", "x", "a", 0)
        );
        let again = plan_pods(&d, &pods).unwrap();
        assert_eq!(again, pods);
        let out = agent_documents(&d, &pods);
        assert_eq!(out.len(), 3, "a Namespace for x is added");
        let pod_a = &out[1];
        assert_eq!(pod_a["spec"]["nodeName"].as_str(), Some(LAB_NODE));
        assert!(
            pod_a["metadata"].get("annotations").is_none(),
            "the agent finds the interface by its name, as on a real node"
        );
    }

    #[test]
    fn terminal_pods_keep_their_address_without_being_wired() {
        let d = docs(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: done, namespace: x}\nstatus: {phase: Succeeded, podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: new, namespace: x, annotations: {lab.netpol-agent.dev/wire: late}}\nstatus: {podIP: 10.0.0.1}\n",
        );
        let pods = plan_pods(&d, &[]).unwrap();
        assert_eq!(pods.len(), 1, "only the live pod is wired");
        assert_eq!(pods[0].name, "new");
        assert_eq!(
            pods[0].ipv4,
            Ipv4Addr::new(10, 0, 0, 1),
            "the address reused"
        );
        assert!(pods[0].wire_late);
        let out = agent_documents(&d, &pods);
        let done = out
            .iter()
            .find(|d| meta_str(d, "name") == Some("done"))
            .unwrap();
        assert_eq!(done["spec"]["nodeName"].as_str(), Some(LAB_NODE));
        assert_eq!(done["status"]["phase"].as_str(), Some("Succeeded"));
        assert_eq!(done["status"]["podIP"].as_str(), Some("10.0.0.1"));
    }

    #[test]
    fn duplicate_given_addresses_are_refused() {
        let d = docs(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nstatus: {podIP: 10.0.0.1}\n",
        );
        let err = plan_pods(&d, &[]).unwrap_err().to_string();
        assert!(
            err.contains("default/b") && err.contains("10.0.0.1"),
            "{err}"
        );
    }

    /// `lab apply` waits for the agent's revision: while a write is only staged the
    /// agent's source must see nothing new (a temporary file inside the directory
    /// moved its modification time, so the agent reported the new revision with the
    /// old policies and a probe right after `lab apply` saw stale rules), and once it
    /// lands a revision at least the written one comes with the new documents.
    #[test]
    fn a_staged_write_changes_nothing_the_agent_reads_until_it_lands() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("policies");
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("cluster.yaml");
        let pod = |name: &str| {
            docs(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x}}\n"
            ))
        };
        write_documents(&target, &pod("old"), None).unwrap();
        let mut reader = crate::source::DirReader::new(&dir);
        let first = reader.read().unwrap().expect("a first read");
        assert_eq!(first.state.pods.len(), 1);
        let revision = first.state.revision + 1_000_000_000;
        let staged = stage_documents(&target, &pod("new"), Some(revision)).unwrap();
        assert!(
            reader.read().unwrap().is_none(),
            "a staged write is invisible in the directory"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        staged.commit().unwrap();
        let landed = reader.read().unwrap().expect("the landed write is read");
        let names: Vec<String> = landed.state.pods.keys().map(|k| k.to_string()).collect();
        assert!(
            landed.state.revision >= revision,
            "{} < {revision}",
            landed.state.revision
        );
        assert_eq!(names.len(), 1);
        assert!(names[0].contains("new"), "{names:?}");
    }

    #[test]
    fn cluster_policies_reach_the_agent_as_written() {
        let text = "apiVersion: networking.k8s.aws/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {name: deny-x}\nspec:\n  tier: Admin\n  priority: 10\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [{namespaces: {matchLabels: {zone: x}}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\n";
        let d = docs(text);
        let pods = plan_pods(&d, &[]).unwrap();
        assert_eq!(pods.len(), 1, "a cluster policy is no pod");
        let out = agent_documents(&d, &pods);
        let cluster: Vec<&Value> = out
            .iter()
            .filter(|d| kind(d) == "ClusterNetworkPolicy")
            .collect();
        assert_eq!(cluster, [&d[0]], "unchanged, no namespace added to it");
        // And the agent's loader takes what the lab writes.
        let dir = std::env::temp_dir().join(format!("netpol-lab-cnp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_documents(&dir.join("cluster.yaml"), &out, None).unwrap();
        let state = policy::load_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let state = state.unwrap();
        assert_eq!(
            state.cluster_policies.keys().collect::<Vec<_>>(),
            ["deny-x"]
        );
    }
}
