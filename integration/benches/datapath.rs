//! `cargo bench -p integration --bench datapath`: ns per packet of the kernel programs
//! through BPF_PROG_TEST_RUN, each case beside a no-op classifier measured in the same
//! run; figures are medians of 7 runs with their spread, and net = case − floor. Every
//! run's verdict and the events the deny runs emit are checked. Also times loading and
//! verifying the programs (`Datapath::load` into a fresh pin directory, the agent's
//! default sizes; median of 5), which bounds the agent's start-up. Needs root. Ends
//! with one JSON line.
//!
//! `NETPOL_BENCH_QUICK=1`: 3 runs of 2,000 repeats per case, 100 single shots, map
//! memory with 500 peers per pod, one load; the same checks (verdicts, event
//! accounting, entry counts), no speed targets; the JSON line gets `"quick":true`.
//! Runs in seconds even in a debug build
//! (`NETPOL_BENCH_QUICK=1 cargo test -p integration --bench datapath`).

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use datapath::{Datapath, LoadOptions, PinLayout, frame_run};
use datapath_common::*;
use integration::{
    frames::{Frame, TCP_ACK, TCP_SYN},
    kernel::*,
};

/// Sizes of one mode.
struct Scale {
    quick: bool,
    /// Runs per case; the median is reported.
    runs: usize,
    /// Repeats per run (BPF_PROG_TEST_RUN's own loop).
    repeat: u32,
    single_shots: usize,
    /// Peer /32s per pod in the map-memory figure.
    memory_peers: u32,
    /// Loads timed; the median is reported.
    loads: usize,
}

const FULL: Scale = Scale {
    quick: false,
    runs: 7,
    repeat: 100_000,
    single_shots: 3_000,
    memory_peers: 5_000,
    loads: 5,
};

const QUICK: Scale = Scale {
    quick: true,
    runs: 3,
    repeat: 2_000,
    single_shots: 100,
    memory_peers: 500,
    loads: 1,
};

/// Events one deny_1k run emits (one per repeat) must fit: 100,000 × 88 bytes. In
/// quick mode a whole live-reader case (3 × 2,000 × 88 bytes) fits, so no event can be
/// lost however slowly the reader runs.
const RING_BYTES: u32 = 16 << 20;
/// A ring record: 8 bytes of header and the 80-byte `FlowEvent`.
const RECORD_BYTES: u64 = 8 + size_of::<FlowEvent>() as u64;

struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(mut xs: Vec<f64>) -> Self {
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Self {
            median: xs[xs.len() / 2],
            min: xs[0],
            max: xs[xs.len() - 1],
        }
    }

    fn show(&self) -> String {
        format!(
            "{:8.1} ns (spread {:.1}..{:.1})",
            self.median, self.min, self.max
        )
    }
}

/// ns per repetition of `prog` on `frame`; the run's verdict must be `want`.
fn run_ns(
    fx: &KernelFixture,
    prog: &'static str,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    want: i32,
) -> f64 {
    let p = fx.dp.as_ref().unwrap().program(prog).unwrap();
    let r = frame_run::run_frame(p, frame, ifindex, 1, repeat).unwrap();
    assert_eq!(r.action, want, "{prog}: verdict");
    r.duration.as_nanos() as f64
}

fn measure(
    fx: &mut KernelFixture,
    sc: &Scale,
    prog: &'static str,
    frame: &[u8],
    ifindex: u32,
    want: i32,
    drain: bool,
) -> Stat {
    let mut xs = Vec::new();
    for _ in 0..sc.runs {
        xs.push(run_ns(fx, prog, frame, ifindex, sc.repeat, want));
        if drain && let Some(r) = fx.reader.as_mut() {
            r.drain(usize::MAX, |_| {});
        }
    }
    Stat::of(xs)
}

/// Removes a pin directory on drop (also when a check panics).
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Milliseconds `Datapath::load` takes with the agent's default sizes into a fresh pin
/// directory (creating the maps, loading and verifying the programs, pinning).
fn load_ms() -> f64 {
    let root = PathBuf::from(format!(
        "/sys/fs/bpf/{}",
        netlab::unique_name("netpol-bench-load-")
    ));
    let _cleanup = PinDir(root.clone());
    let opts = LoadOptions {
        pins: PinLayout::new(&root),
        ..LoadOptions::default()
    };
    let started = Instant::now();
    let dp = Datapath::load(&opts).expect("load datapath");
    let ms = started.elapsed().as_secs_f64() * 1e3;
    for name in [
        program_names::POD_INGRESS,
        program_names::POD_EGRESS,
        program_names::NOOP,
    ] {
        assert!(dp.program(name).is_ok(), "{name} loaded");
    }
    dp.remove_all().expect("remove the loaded datapath");
    ms
}

fn bpf_stats_enabled() -> String {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let sc = if std::env::var("NETPOL_BENCH_QUICK").is_ok_and(|v| v == "1") {
        QUICK
    } else {
        FULL
    };
    let mut fx = KernelFixture::with_options(
        &["pa"],
        FixtureOptions {
            ring_bytes: RING_BYTES,
            ..Default::default()
        },
    );
    let pa = fx.ifindex("pa");
    let pod: IpAddr = "10.1.0.2".parse().unwrap();
    let pod6: IpAddr = "fd00:1::2".parse().unwrap();
    let set = 9;
    fx.set_pod(
        pa,
        &[pod, pod6],
        STATE_POLICIES_APPLIED,
        STATE_POLICIES_APPLIED,
    );
    fx.set_policy_set(pa, set);
    // 1,000 prefixes: 500 IPv4 /24s and 500 IPv6 /64s, all sharing one rule list.
    let list = 1;
    fx.dp()
        .maps()
        .put_rule_list(list, &[rule(PROTO_TCP, 80, 80, 77)])
        .unwrap();
    for i in 0..500u32 {
        for (addr, bits) in [
            (
                IpAddr::from([10, 20 + (i / 256) as u8, (i % 256) as u8, 0]),
                24,
            ),
            (IpAddr::from([0xfd00, 0x20, i as u16, 0, 0, 0, 0, 0]), 64),
        ] {
            for direction in [DIRECTION_INGRESS, DIRECTION_EGRESS] {
                let (key, len) = datapath_common::policy_key(set, direction, addr, bits);
                fx.dp().maps().put_entry(&key, len, list).unwrap();
            }
        }
    }
    let mut rec = fx.dp().maps().pod(pa).unwrap();
    for direction in [DIRECTION_INGRESS, DIRECTION_EGRESS] {
        rec.note_entry(direction, FAMILY_IPV4, 24);
        rec.note_entry(direction, FAMILY_IPV6, 64);
    }
    fx.dp().maps().put_pod(pa, &rec).unwrap();
    let peer: IpAddr = "10.21.44.9".parse().unwrap();
    let noop = program_names::NOOP;
    let ingress = program_names::POD_INGRESS;
    let egress = program_names::POD_EGRESS;

    println!(
        "kernel.bpf_stats_enabled = {} (adds a constant to every run; targets are net of the floor)",
        bpf_stats_enabled()
    );
    println!(
        "deny ring: {} MiB, {} repeats per run, {} runs per case{}",
        RING_BYTES >> 20,
        sc.repeat,
        sc.runs,
        if sc.quick { " (quick mode)" } else { "" }
    );
    if sc.quick {
        // Nothing in quick mode depends on how fast a reader drains.
        assert!(sc.runs as u64 * u64::from(sc.repeat) * RECORD_BYTES <= u64::from(RING_BYTES));
    }

    let floor = measure(
        &mut fx,
        &sc,
        noop,
        &Frame::tcp(peer, 1, pod, 80, TCP_SYN).build(),
        pa,
        ACT_PASS,
        false,
    );

    // No policy: a default-allow pod (the first packet opens conntrack, the rest hit it).
    let mut other = KernelFixture::with_options(
        &["pb"],
        FixtureOptions {
            ring_bytes: RING_BYTES,
            ..Default::default()
        },
    );
    let pb = other.ifindex("pb");
    other.set_pod(pb, &[pod], STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let allow_default = measure(
        &mut other,
        &sc,
        ingress,
        &Frame::tcp(peer, 2, pod, 80, TCP_SYN).build(),
        pb,
        ACT_PASS,
        true,
    );
    // Map memory with 10 pods per policy set, in this fixture's untouched policy maps
    // (one load fewer than a fixture of its own; see `memory` below).
    let shared_memory = map_memory(&mut other, 10, sc.memory_peers);
    drop(other);

    // Conntrack hit: an allowed flow's next packets.
    let flow = Frame::tcp(peer, 3, pod, 80, TCP_SYN).build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &flow), ACT_PASS);
    let ct_hit = measure(
        &mut fx,
        &sc,
        ingress,
        &Frame::tcp(peer, 3, pod, 80, TCP_ACK).build(),
        pa,
        ACT_PASS,
        true,
    );

    // A reply riding conntrack: the pod opened the flow outwards.
    assert_eq!(
        fx.run(
            DIRECTION_EGRESS,
            pa,
            &Frame::tcp(pod, 4000, peer, 80, TCP_SYN).build()
        ),
        ACT_PASS
    );
    let reply = measure(
        &mut fx,
        &sc,
        ingress,
        &Frame::tcp(peer, 80, pod, 4000, TCP_ACK).build(),
        pa,
        ACT_PASS,
        true,
    );

    // New flow denied against 1,000 prefixes: full evaluation and one event per repeat.
    let deny_frame = Frame::tcp(peer, 5, pod, 81, TCP_SYN).build();
    fx.events();
    let before = fx.counters();
    let deny = measure(&mut fx, &sc, ingress, &deny_frame, pa, ACT_DROP, true);
    let after = fx.counters();
    assert_eq!(
        after.events_lost, before.events_lost,
        "the ring must never fill during the deny runs"
    );
    assert_eq!(
        after.events_submitted - before.events_submitted,
        sc.runs as u64 * u64::from(sc.repeat),
        "every repeat was a full evaluation"
    );

    // The same 1,000 prefixes at lengths the datapath keeps in its tries rather than
    // its hashes (IPv4 /23s, IPv6 /63s), in a second policy set.
    let trie_set = set + 1;
    for i in 0..500u32 {
        for (addr, bits) in [
            (
                IpAddr::from([10, 20 + (i / 128) as u8, (i % 128 * 2) as u8, 0]),
                23,
            ),
            (
                IpAddr::from([0xfd00, 0x20, i as u16 * 2, 0, 0, 0, 0, 0]),
                63,
            ),
        ] {
            for direction in [DIRECTION_INGRESS, DIRECTION_EGRESS] {
                let (key, len) = datapath_common::policy_key(trie_set, direction, addr, bits);
                fx.dp().maps().put_entry(&key, len, list).unwrap();
            }
        }
    }
    let hashed = fx.dp().maps().pod(pa).unwrap();
    let mut in_trie = hashed;
    in_trie.policy_set = trie_set;
    in_trie.lookups = [[LOOKUP_TRIE; 2]; 2];
    fx.dp().maps().put_pod(pa, &in_trie).unwrap();
    let trie_peer: IpAddr = "10.20.89.9".parse().unwrap();
    let trie_deny_frame = Frame::tcp(trie_peer, 5, pod, 81, TCP_SYN).build();
    // The trie entry is found: its rule admits port 80 (the pod denies what no entry admits).
    assert_eq!(
        fx.run(
            DIRECTION_INGRESS,
            pa,
            &Frame::tcp(trie_peer, 7, pod, 80, TCP_SYN).build()
        ),
        ACT_PASS
    );
    fx.events();
    let before = fx.counters();
    let deny_trie = measure(&mut fx, &sc, ingress, &trie_deny_frame, pa, ACT_DROP, true);
    let after = fx.counters();
    assert_eq!(after.events_lost, before.events_lost);
    assert_eq!(
        after.events_submitted - before.events_submitted,
        sc.runs as u64 * u64::from(sc.repeat),
        "every repeat was a full evaluation"
    );
    fx.dp().maps().put_pod(pa, &hashed).unwrap();
    fx.events();

    // The same with a live reader draining the ring (adaptive wake-ups), and with the
    // kernel's default wake-up on every event for comparison.
    let live = |fx: &mut KernelFixture, threshold: u64| -> Stat {
        fx.events();
        let mut s = fx.dp().maps().settings().unwrap();
        s.wakeup_threshold_bytes = threshold;
        fx.dp().maps().set_settings(&s).unwrap();
        let mut reader = fx.reader.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let read = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, read) = (stop.clone(), read.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    reader.wait(Duration::from_millis(10)).unwrap();
                    let n = reader.drain(usize::MAX, |_| {});
                    read.fetch_add(n as u64, Ordering::Relaxed);
                }
                let n = reader.drain(usize::MAX, |_| {});
                read.fetch_add(n as u64, Ordering::Relaxed);
                reader
            })
        };
        let before = fx.counters();
        let mut xs = Vec::new();
        for _ in 0..sc.runs {
            xs.push(run_ns(fx, ingress, &deny_frame, pa, sc.repeat, ACT_DROP));
        }
        stop.store(true, Ordering::Relaxed);
        fx.reader = Some(handle.join().unwrap());
        let after = fx.counters();
        assert_eq!(
            after.events_lost, before.events_lost,
            "the live reader kept up"
        );
        let events = sc.runs as u64 * u64::from(sc.repeat);
        assert_eq!(after.events_submitted - before.events_submitted, events);
        assert_eq!(
            read.load(Ordering::Relaxed),
            events,
            "the reader got every event"
        );
        Stat::of(xs)
    };
    let deny_live = live(&mut fx, 256 * 1024);
    let deny_live_eager = live(&mut fx, 0);

    // Single-shot runs: an allowed new flow (conntrack entry removed between runs)
    // beside a single-shot floor, with the datapath's default wake-up threshold. (With
    // no threshold, each run's event finds the drained ring empty and wakes the
    // reader: an interrupt the run pays, several microseconds in this VM.)
    let mut s = fx.dp().maps().settings().unwrap();
    s.wakeup_threshold_bytes = datapath::LoadOptions::default()
        .settings
        .wakeup_threshold_bytes;
    fx.dp().maps().set_settings(&s).unwrap();
    let allow_frame = Frame::tcp(peer, 6, pod, 80, TCP_SYN).build();
    let noop_frame = Frame::tcp(peer, 6, pod, 80, TCP_SYN).build();
    let mut noop_r1 = Vec::new();
    let mut new_flow = Vec::new();
    for _ in 0..sc.single_shots {
        for entry in fx.dp().maps().conntrack() {
            fx.dp().maps().remove_conntrack(&entry.key).unwrap();
        }
        new_flow.push(run_ns(&fx, ingress, &allow_frame, pa, 1, ACT_PASS));
        noop_r1.push(run_ns(&fx, noop, &noop_frame, pa, 1, ACT_PASS));
        fx.events();
    }
    let noop_r1 = Stat::of(noop_r1);
    let new_flow = Stat::of(new_flow);
    let _ = egress;

    // Map memory for 110 local pods, each allowing ingress from 5,000 peer pods (/32s),
    // all entries sharing deduplicated rule lists: the kernel's own accounting
    // (fdinfo memlock, which for these maps counts the elements actually held).
    let memory = map_memory(&mut fx, 1, sc.memory_peers);
    drop(fx);

    // Start-up: loading and verifying the programs.
    let mut loads: Vec<f64> = (0..sc.loads).map(|_| load_ms()).collect();
    loads.sort_by(f64::total_cmp);
    let load_ms = loads[loads.len() / 2];

    let net = |s: &Stat, f: &Stat| s.median - f.median;
    println!("floor (no-op)                  {}", floor.show());
    println!(
        "allow, no policy               {}  net {:6.1}",
        allow_default.show(),
        net(&allow_default, &floor)
    );
    println!(
        "conntrack hit                  {}  net {:6.1}  (target <= 50)",
        ct_hit.show(),
        net(&ct_hit, &floor)
    );
    println!(
        "reply riding conntrack         {}  net {:6.1}",
        reply.show(),
        net(&reply, &floor)
    );
    println!(
        "new flow denied, 1k prefixes   {}  net {:6.1}  (target <= 150)",
        deny.show(),
        net(&deny, &floor)
    );
    println!(
        "  same prefixes in the trie    {}  net {:6.1}",
        deny_trie.show(),
        net(&deny_trie, &floor)
    );
    println!(
        "  with a live reader           {}  net {:6.1}  (target within 100 of the above)",
        deny_live.show(),
        net(&deny_live, &floor)
    );
    println!(
        "  live reader, eager wake-ups  {}  net {:6.1}",
        deny_live_eager.show(),
        net(&deny_live_eager, &floor)
    );
    println!("floor, single shot             {}", noop_r1.show());
    println!(
        "new flow allowed, single shot  {}  net {:6.1}",
        new_flow.show(),
        net(&new_flow, &noop_r1)
    );
    println!(
        "map memory, 110 pods x {} peer /32s ({} entries): policy entries {:.1} MiB ({:.1} MiB before them, then {:.0} bytes per entry), RULE_LISTS {:.3} MiB, pod slots {:.3} MiB",
        sc.memory_peers,
        memory.entries,
        memory.lpm as f64 / 1048576.0,
        memory.fixed as f64 / 1048576.0,
        memory.per_added_entry,
        memory.rule_lists as f64 / 1048576.0,
        memory.pods as f64 / 1048576.0,
    );
    println!(
        "  the same 110 pods as 11 workloads of 10 (one policy set each): {} entries, policy entries {:.1} MiB ({:.1} MiB before them)",
        shared_memory.entries,
        shared_memory.lpm as f64 / 1048576.0,
        shared_memory.fixed as f64 / 1048576.0,
    );
    println!(
        "load and verify (Datapath::load, fresh pins, default sizes): {load_ms:.1} ms (median of {}; spread {:.1}..{:.1})",
        loads.len(),
        loads[0],
        loads[loads.len() - 1]
    );
    if sc.quick {
        println!("quick mode: speed targets not checked");
    }
    println!(
        "{{\"bench\":\"datapath\",\"lpm_memory_mib_110x{peers}\":{:.1},\"lpm_memory_mib_110x{peers}_11_workloads\":{:.1},\"noop_ns\":{:.1},\"allow_default_ns\":{:.1},\"ct_hit_ns\":{:.1},\"reply_ns\":{:.1},\"deny_1k_ns\":{:.1},\"deny_1k_trie_ns\":{:.1},\"noop_r1_ns\":{:.1},\"new_flow_1k_r1_ns\":{:.1},\"deny_1k_live_reader_ns\":{:.1},\"deny_1k_live_reader_eager_ns\":{:.1},\"load_ms\":{load_ms:.1},\"bpf_stats_enabled\":\"{}\"{}}}",
        memory.lpm as f64 / 1048576.0,
        shared_memory.lpm as f64 / 1048576.0,
        floor.median,
        allow_default.median,
        ct_hit.median,
        reply.median,
        deny.median,
        deny_trie.median,
        noop_r1.median,
        new_flow.median,
        deny_live.median,
        deny_live_eager.median,
        bpf_stats_enabled(),
        if sc.quick { ",\"quick\":true" } else { "" },
        peers = sc.memory_peers,
    );
}

struct Memory {
    entries: u64,
    lpm: u64,
    /// The policy maps before the 550,000 entries: mostly the hashes' bucket arrays.
    fixed: u64,
    per_added_entry: f64,
    rule_lists: u64,
    pods: u64,
}

/// `memlock` of a pinned map, from /proc/self/fdinfo.
fn memlock(pins: &datapath::PinLayout, name: &str) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    let info = aya::maps::MapInfo::from_pin(pins.maps_dir().join(name)).unwrap();
    let fd = info.fd().unwrap();
    let raw = fd.as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The policy maps of 110 pods each admitting `peers` peer /32s (5,000 in full mode),
/// `pods_per_set` pods sharing each policy set (the planner gives pods with equal
/// entries one set: 1 is every pod with rules of its own, 10 is eleven workloads of ten
/// pods).
fn map_memory(fx: &mut KernelFixture, pods_per_set: u32, peers: u32) -> Memory {
    const PODS: u32 = 110;
    let pins = fx.dp().pins().clone();
    let policy_bytes = || -> u64 {
        [
            map_names::POLICY_V4,
            map_names::POLICY_V6,
            map_names::POLICY_HASH_V4,
            map_names::POLICY_HASH_V6,
        ]
        .iter()
        .map(|name| memlock(&pins, name))
        .sum()
    };
    let bytes_before = policy_bytes();
    let entries_before = fx.dp().maps().entries().len() as u64;
    let lists: Vec<u32> = (0..4).map(|i| 1000 + i).collect();
    for (i, id) in lists.iter().enumerate() {
        let port = 8000 + i as u16;
        fx.dp()
            .maps()
            .put_rule_list(
                *id,
                &[
                    rule(PROTO_TCP, port, port, 500 + i as u32),
                    rule(PROTO_UDP, 53, 53, 600),
                ],
            )
            .unwrap();
    }
    for pod in 0..PODS {
        let set = 10_000 + pod / pods_per_set;
        let ifindex = 100_000 + pod;
        let mut rec = datapath_common::PodRecord {
            policy_set: set,
            ingress_state: STATE_POLICIES_APPLIED,
            ..Default::default()
        };
        rec.note_entry(DIRECTION_INGRESS, FAMILY_IPV4, 32);
        fx.dp().maps().put_pod(ifindex, &rec).unwrap();
        if pod % pods_per_set != 0 {
            continue;
        }
        for peer in 0..peers {
            let addr = IpAddr::from([
                10,
                100 + (peer / 65536) as u8,
                (peer / 256 % 256) as u8,
                (peer % 256) as u8,
            ]);
            let (key, len) = datapath_common::policy_key(set, DIRECTION_INGRESS, addr, 32);
            fx.dp()
                .maps()
                .put_entry(&key, len, lists[(pod / pods_per_set % 4) as usize])
                .unwrap();
        }
    }
    let entries = fx.dp().maps().entries().len() as u64;
    assert_eq!(
        entries - entries_before,
        u64::from(PODS / pods_per_set * peers),
        "one entry per set and peer"
    );
    let bytes = policy_bytes();
    Memory {
        entries,
        lpm: bytes,
        fixed: bytes_before,
        per_added_entry: (bytes - bytes_before) as f64 / (entries - entries_before) as f64,
        rule_lists: memlock(&pins, map_names::RULE_LISTS),
        pods: memlock(&pins, map_names::POD_SLOTS) + memlock(&pins, map_names::POD_INDEX),
    }
}
