//! `netpol-agent ebpf …`: what the kernel holds, read from the pins of a running (or
//! stopped) agent, like the EKS guide's `aws-eks-na-cli ebpf` tool: programs and their
//! attach points, maps and their fill, pod records, policy entries with their rules,
//! conntrack entries, and the flow events as the agent writes them. Tables by default,
//! JSON on request.

use std::{
    io::{BufRead, Seek, SeekFrom},
    net::IpAddr,
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use datapath::{DatapathMaps, PinLayout};
use datapath_common::*;
use exporter::enrich::event_addr as addr;
use exporter::labels;
use serde_json::{Value, json};

fn state_name(state: u8) -> &'static str {
    match state {
        STATE_DEFAULT_ALLOW => "default-allow",
        STATE_DEFAULT_DENY => "default-deny",
        STATE_POLICIES_APPLIED => "policies-applied",
        _ => "unknown",
    }
}

/// A rule's protocol: `any` for a rule on every protocol, else the flow-log word.
fn rule_protocol_name(p: u8) -> &'static str {
    if p == PROTO_ANY {
        "any"
    } else {
        labels::protocol(p)
    }
}

/// The interface's name here, or `if<index>` when no interface has the index.
fn ifname(ifindex: u32) -> String {
    datapath::interface_name(ifindex).unwrap_or_else(|| format!("if{ifindex}"))
}

fn print(rows: Vec<Value>, json: bool, columns: &[&str]) {
    if json {
        println!("{}", Value::Array(rows));
        return;
    }
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(&r[*c]).len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for r in &rows {
        println!("{}", line(columns.iter().map(|c| cell(&r[*c])).collect()));
    }
}

/// Programs pinned by the agent and where they are attached.
pub fn progs(pins: &PinLayout, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(pins.progs_dir())
        .with_context(|| format!("no agent pins under {}", pins.root().display()))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let prog = aya::programs::SchedClassifier::from_pin(entry.path())
            .with_context(|| format!("opening {}", entry.path().display()))?;
        let info = prog.info()?;
        let attached: Vec<String> = std::fs::read_dir(pins.links_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|l| {
                let n = l.file_name().to_string_lossy().into_owned();
                let (ifindex, program) = PinLayout::parse_link_name(&n)?;
                (program == name).then(|| ifname(ifindex))
            })
            .collect();
        rows.push(json!({
            "id": info.id(),
            "name": name,
            "verified_insns": info.verified_instruction_count().unwrap_or(0),
            "attached": attached.join(","),
        }));
    }
    print(rows, json, &["id", "name", "verified_insns", "attached"]);
    Ok(())
}

/// Our maps with their capacity and fill.
pub fn maps(pins: &PinLayout, json: bool) -> Result<()> {
    let m = DatapathMaps::open_pinned(pins)?;
    let fill = |name: &str| -> Option<usize> {
        match name {
            map_names::POD_SLOTS => Some(m.pods().len()),
            map_names::POLICY_V4 => Some(
                m.entries()
                    .iter()
                    .filter(|(k, ..)| k.family == FAMILY_IPV4)
                    .count(),
            ),
            map_names::POLICY_V6 => Some(
                m.entries()
                    .iter()
                    .filter(|(k, ..)| k.family == FAMILY_IPV6)
                    .count(),
            ),
            map_names::RULE_LISTS => Some(m.rule_lists().len()),
            map_names::CONNTRACK => Some(m.conntrack().len()),
            map_names::FOLDS => Some(m.folds().len()),
            _ => None,
        }
    };
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(pins.maps_dir())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let info = aya::maps::MapInfo::from_pin(entry.path())?;
        rows.push(json!({
            "id": info.id(),
            "name": name,
            "type": info.map_type().map_or_else(|_| "unknown".to_string(), |t| format!("{t:?}")),
            "max_entries": info.max_entries(),
            "entries": fill(&name).map_or(Value::from("-"), Value::from),
        }));
    }
    print(
        rows,
        json,
        &["id", "name", "type", "max_entries", "entries"],
    );
    Ok(())
}

/// Pod records: interface, states, addresses, policy set and its entry count.
pub fn pods(pins: &PinLayout, json: bool) -> Result<()> {
    let m = DatapathMaps::open_pinned(pins)?;
    let entries = m.entries();
    let mut rows = Vec::new();
    for (ifindex, r) in m.pods() {
        let count = entries
            .iter()
            .filter(|(k, _, _)| u32::from_be(k.policy_set_be) == r.policy_set)
            .count();
        rows.push(json!({
            "interface": ifname(ifindex),
            "ifindex": ifindex,
            "ingress": state_name(r.ingress_state),
            "egress": state_name(r.egress_state),
            "ipv4": if r.addr_flags & POD_HAS_IPV4 != 0 { IpAddr::from(r.ipv4).to_string() } else { String::new() },
            "ipv6": if r.addr_flags & POD_HAS_IPV6 != 0 { IpAddr::from(r.ipv6).to_string() } else { String::new() },
            "policy_set": r.policy_set,
            "generation": r.generation,
            "entries": count,
        }));
    }
    print(
        rows,
        json,
        &[
            "interface",
            "ifindex",
            "ingress",
            "egress",
            "ipv4",
            "ipv6",
            "policy_set",
            "generation",
            "entries",
        ],
    );
    Ok(())
}

/// Policy entries (prefix → rules), with policy names from the table the agent writes
/// beside its lock (ids only when it is missing).
pub fn policies(pins: &PinLayout, json: bool) -> Result<()> {
    let table_file = crate::guard::run_file(pins.root(), "policies.json");
    let names: std::collections::BTreeMap<u32, String> = std::fs::read(&table_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let m = DatapathMaps::open_pinned(pins)?;
    let lists: std::collections::HashMap<u32, RuleList> = m.rule_lists().into_iter().collect();
    let pods = m.pods();
    let mut rows = Vec::new();
    for (key, prefix_len, list_id) in m.entries() {
        let set = u32::from_be(key.policy_set_be);
        let pod = pods
            .iter()
            .filter(|(_, r)| r.policy_set == set)
            .map(|(i, _)| ifname(*i))
            .collect::<Vec<_>>()
            .join(",");
        let bits = prefix_len;
        let rules: Vec<String> = lists
            .get(&list_id)
            .map(|l| {
                l.rules[..(l.len as usize).min(MAX_RULES_PER_LIST)]
                    .iter()
                    .map(|r| {
                        let who = names
                            .get(&r.policy_id)
                            .cloned()
                            .unwrap_or_else(|| format!("policy id {}", r.policy_id));
                        if r.port_min == 0 && r.port_max == u16::MAX {
                            format!("{} all ports ({who})", rule_protocol_name(r.protocol))
                        } else {
                            format!(
                                "{} {}-{} ({who})",
                                rule_protocol_name(r.protocol),
                                r.port_min,
                                r.port_max
                            )
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.push(json!({
            "pods": pod,
            "policy_set": set,
            "direction": if key.direction == DIRECTION_INGRESS { "ingress" } else { "egress" },
            "peer": format!("{}/{bits}", addr(key.family, &key.addr)),
            "rules": if rules.is_empty() { "(none: deny)".to_string() } else { rules.join("; ") },
        }));
    }
    print(
        rows,
        json,
        &["pods", "policy_set", "direction", "peer", "rules"],
    );
    Ok(())
}

/// Conntrack entries.
pub fn conntrack(pins: &PinLayout, json: bool) -> Result<()> {
    let m = DatapathMaps::open_pinned(pins)?;
    let now = datapath_common::clock::monotonic_now_ns();
    let rows = m
        .conntrack()
        .into_iter()
        .map(|e| {
            let k = e.key;
            json!({
                "interface": ifname(k.ifindex),
                "proto": labels::protocol(k.protocol),
                "pod": std::net::SocketAddr::new(addr(k.family, &k.pod_addr), k.pod_port).to_string(),
                "peer": std::net::SocketAddr::new(addr(k.family, &k.peer_addr), k.peer_port).to_string(),
                "opened": if e.value.origin_direction == DIRECTION_INGRESS { "ingress" } else { "egress" },
                "policy": e.value.policy_id,
                "idle_s": now.saturating_sub(e.value.last_seen_ns) / 1_000_000_000,
            })
        })
        .collect();
    print(
        rows,
        json,
        &[
            "interface",
            "proto",
            "pod",
            "peer",
            "opened",
            "policy",
            "idle_s",
        ],
    );
    Ok(())
}

/// Follows the agent's flow-log file: every verdict as the agent decoded and enriched
/// it. (The ring itself has one reader, the agent; a second would steal its events.)
pub fn events(log_file: &Path, json: bool, follow_for: Option<Duration>) -> Result<()> {
    let mut file =
        std::fs::File::open(log_file).with_context(|| format!("opening {}", log_file.display()))?;
    file.seek(SeekFrom::End(0))?;
    let mut reader = std::io::BufReader::new(file);
    let deadline = follow_for.map(|d| std::time::Instant::now() + d);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if json {
            print!("{line}");
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        println!(
            "{} {:6} {:7} {:>22}:{:<5} -> {:>22}:{:<5} {:6} {} -> {} [{}] x{}",
            v["timestamp"].as_str().unwrap_or(""),
            v["Verdict"].as_str().unwrap_or(""),
            v["Direction"].as_str().unwrap_or(""),
            v["Src IP"].as_str().unwrap_or(""),
            v["Src Port"],
            v["Dest IP"].as_str().unwrap_or(""),
            v["Dest Port"],
            v["Proto"].as_str().unwrap_or(""),
            format_args!(
                "{}/{}",
                v["Src Namespace"].as_str().unwrap_or(""),
                v["Src Pod"].as_str().unwrap_or("")
            ),
            format_args!(
                "{}/{}",
                v["Dest Namespace"].as_str().unwrap_or(""),
                v["Dest Pod"].as_str().unwrap_or("")
            ),
            v["Policy"].as_str().unwrap_or(""),
            v["Count"],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_protocols_use_the_flow_log_words_and_any() {
        assert_eq!(rule_protocol_name(PROTO_ANY), "any");
        assert_eq!(rule_protocol_name(PROTO_TCP), "TCP");
        assert_eq!(rule_protocol_name(PROTO_ICMPV6), "ICMPv6");
        assert_eq!(rule_protocol_name(47), "UNKNOWN");
    }

    #[test]
    fn an_index_with_no_interface_prints_as_its_number() {
        assert_eq!(ifname(u32::MAX), format!("if{}", u32::MAX));
    }
}
