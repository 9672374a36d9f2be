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
//!
//! Beside the original cases: the allowed new flow with the ring left undrained (the
//! incumbent harness's `*_undrained_ns`), the pod under 100 Admin cluster rules (issue
//! 17: `admin100_*`, see [`admin100`]) and the flow-record sweep's userspace cost per
//! flow (issue 18: `sweep_*_ns_per_flow`), and the single-shot new flow taken apart
//! (issue 18: `parts_*_r1_ns`, see [`new_flow_parts`]). `NETPOL_BENCH_CASES_ONLY=1` skips map memory
//! and loads. With baselines named (see [`compare`]), the run is instead a back-to-back
//! comparison printing the issues' ratios against their targets (full mode only: quick
//! mode never judges speed).

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use datapath::{Datapath, FlowSweeper, LoadOptions, PinLayout, RecordOptions, frame_run};
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
    /// Conntrack entries in the flow-record sweep figures (the fixture's table holds
    /// 4,096; the LRU may evict before it is full).
    sweep_flows: u32,
}

const FULL: Scale = Scale {
    quick: false,
    runs: 7,
    repeat: 100_000,
    single_shots: 3_000,
    memory_peers: 5_000,
    loads: 5,
    sweep_flows: 3_000,
};

const QUICK: Scale = Scale {
    quick: true,
    runs: 3,
    repeat: 2_000,
    single_shots: 100,
    memory_peers: 500,
    loads: 1,
    sweep_flows: 500,
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

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == value)
}

fn main() {
    let sc = if env_is("NETPOL_BENCH_QUICK", "1") {
        QUICK
    } else {
        FULL
    };
    if !sc.quick && compare::wanted() {
        compare::run();
        return;
    }
    // Cases only (what the comparison runs in each round): no map memory, no loads.
    let sc = if env_is("NETPOL_BENCH_CASES_ONLY", "1") {
        Scale {
            memory_peers: 10,
            loads: 0,
            ..sc
        }
    } else {
        sc
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
    let np_rule = rule(PROTO_TCP, 80, 80, 77);
    fx.dp().maps().put_rule_list(list, &[np_rule]).unwrap();
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
        clear_conntrack(&mut fx);
        new_flow.push(run_ns(&fx, ingress, &allow_frame, pa, 1, ACT_PASS));
        noop_r1.push(run_ns(&fx, noop, &noop_frame, pa, 1, ACT_PASS));
        fx.events();
    }
    let noop_r1 = Stat::of(noop_r1);
    let new_flow = Stat::of(new_flow);
    let _ = egress;

    // The same with the ring left undrained between shots (the incumbent harness's
    // *_undrained_ns keys): each event lands behind the ones before it.
    let before = fx.counters();
    let mut noop_r1_undrained = Vec::new();
    let mut new_flow_undrained = Vec::new();
    for _ in 0..sc.single_shots {
        clear_conntrack(&mut fx);
        new_flow_undrained.push(run_ns(&fx, ingress, &allow_frame, pa, 1, ACT_PASS));
        noop_r1_undrained.push(run_ns(&fx, noop, &noop_frame, pa, 1, ACT_PASS));
    }
    let after = fx.counters();
    assert_eq!(after.events_lost, before.events_lost);
    assert_eq!(
        fx.events().len(),
        sc.single_shots,
        "one event per undrained single shot"
    );
    assert_eq!(
        after.conntrack_inserts - before.conntrack_inserts,
        sc.single_shots as u64,
        "every undrained single shot tracked its flow"
    );
    let noop_r1_undrained = Stat::of(noop_r1_undrained);
    let new_flow_undrained = Stat::of(new_flow_undrained);

    let parts = new_flow_parts(&mut fx, &sc, pa, pod, peer);
    let admin = admin100(&mut fx, &sc, pa, pod, peer, set + 2, np_rule);
    let sweep = sweep_cost(&mut fx, &sc, pa, pod, peer);

    // Map memory for 110 local pods, each allowing ingress from 5,000 peer pods (/32s),
    // all entries sharing deduplicated rule lists: the kernel's own accounting
    // (fdinfo memlock, which for these maps counts the elements actually held).
    let memory = map_memory(&mut fx, 1, sc.memory_peers);
    drop(fx);

    // Start-up: loading and verifying the programs.
    let mut loads: Vec<f64> = (0..sc.loads).map(|_| load_ms()).collect();
    if loads.is_empty() {
        loads.push(0.0);
    }
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
        "  ring not drained, floor      {}",
        noop_r1_undrained.show()
    );
    println!(
        "  ring not drained             {}  net {:6.1}",
        new_flow_undrained.show(),
        net(&new_flow_undrained, &noop_r1_undrained)
    );
    println!(
        "new flow allowed, single shot, part by part (issue 18): whole {}  net {:6.1} beside its floor {}",
        parts.full.show(),
        net(&parts.full, &parts.noop_r1),
        parts.noop_r1.show()
    );
    let whole = net(&parts.full, &parts.noop_r1);
    for (part, ns) in [
        ("ACCEPT event (ring reserve, write, submit)", parts.ring()),
        ("policy lookups (entry hash, rule list)", parts.policy()),
        ("conntrack miss and insert", parts.tracking()),
        ("the rest (pod, parse, lookup, counters)", parts.rest()),
    ] {
        println!(
            "  {part:44} {ns:6.1} ns ({:.0}%)",
            100.0 * ns / whole.max(1.0)
        );
    }
    println!(
        "100 Admin rules (issue 17): deny by the 100th {}  net {:6.1}",
        admin.deny.show(),
        net(&admin.deny, &floor)
    );
    println!(
        "  allow through them and an NP rule, single shot {}  net {:6.1}",
        admin.new_flow.show(),
        net(&admin.new_flow, &admin.noop_r1)
    );
    println!(
        "  conntrack hit with them      {}  net {:6.1}",
        admin.ct_hit.show(),
        net(&admin.ct_hit, &floor)
    );
    println!(
        "flow-record sweep, {} flows: open flows {:.0} ns per flow, ending them with final records {:.0} ns per flow",
        sc.sweep_flows, sweep.live_ns_per_flow, sweep.end_ns_per_flow
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
        "{{\"bench\":\"datapath\",\"lpm_memory_mib_110x{peers}\":{:.1},\"lpm_memory_mib_110x{peers}_11_workloads\":{:.1},\"noop_ns\":{:.1},\"allow_default_ns\":{:.1},\"ct_hit_ns\":{:.1},\"reply_ns\":{:.1},\"deny_1k_ns\":{:.1},\"deny_1k_trie_ns\":{:.1},\"noop_r1_ns\":{:.1},\"new_flow_1k_r1_ns\":{:.1},\"deny_1k_live_reader_ns\":{:.1},\"deny_1k_live_reader_eager_ns\":{:.1},\"noop_r1_undrained_ns\":{:.1},\"new_flow_1k_r1_undrained_ns\":{:.1},\"admin100_deny_ns\":{:.1},\"admin100_noop_r1_ns\":{:.1},\"admin100_new_flow_r1_ns\":{:.1},\"admin100_ct_hit_ns\":{:.1},\"sweep_live_ns_per_flow\":{:.1},\"sweep_end_ns_per_flow\":{:.1},\"parts_noop_r1_ns\":{:.1},\"parts_new_flow_r1_ns\":{:.1},\"parts_no_event_r1_ns\":{:.1},\"parts_no_policy_r1_ns\":{:.1},\"parts_cold_hit_r1_ns\":{:.1},\"load_ms\":{load_ms:.1},\"bpf_stats_enabled\":\"{}\"{}}}",
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
        noop_r1_undrained.median,
        new_flow_undrained.median,
        admin.deny.median,
        admin.noop_r1.median,
        admin.new_flow.median,
        admin.ct_hit.median,
        sweep.live_ns_per_flow,
        sweep.end_ns_per_flow,
        parts.noop_r1.median,
        parts.full.median,
        parts.no_event.median,
        parts.no_policy.median,
        parts.cold_hit.median,
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

/// Deletes every conntrack entry (a single shot's flow is new again).
fn clear_conntrack(fx: &mut KernelFixture) {
    for entry in fx.dp().maps().conntrack() {
        fx.dp().maps().remove_conntrack(&entry.key).unwrap();
    }
}

/// Issue 18's breakdown of the single-shot new allowed flow: the same shot with one
/// part taken away at a time, each beside its own floor in the same rotation, and
/// the same userspace steps (settings written, conntrack entries removed) before
/// every shot so each meets the caches alike.
struct NewFlowParts {
    noop_r1: Stat,
    /// The whole path: policy lookups, conntrack insert, the ACCEPT event.
    full: Stat,
    /// Without the event (the event scope filters ACCEPT out).
    no_event: Stat,
    /// Without the event and the policy lookups (the pod's ingress in default allow).
    no_policy: Stat,
    /// A tracked flow's next packet: the lookup that finds it, no insert.
    cold_hit: Stat,
}

impl NewFlowParts {
    fn ring(&self) -> f64 {
        self.full.median - self.no_event.median
    }
    fn policy(&self) -> f64 {
        self.no_event.median - self.no_policy.median
    }
    fn tracking(&self) -> f64 {
        self.no_policy.median - self.cold_hit.median
    }
    fn rest(&self) -> f64 {
        self.cold_hit.median - self.noop_r1.median
    }
}

fn new_flow_parts(
    fx: &mut KernelFixture,
    sc: &Scale,
    pa: u32,
    pod: IpAddr,
    peer: IpAddr,
) -> NewFlowParts {
    let ingress = program_names::POD_INGRESS;
    let syn = Frame::tcp(peer, 6, pod, 80, TCP_SYN).build();
    let ack = Frame::tcp(peer, 6, pod, 80, TCP_ACK).build();
    let other = Frame::tcp(peer, 7, pod, 80, TCP_SYN).build();
    let applied = fx.dp().maps().pod(pa).unwrap();
    let default_allow = PodRecord {
        ingress_state: STATE_DEFAULT_ALLOW,
        ..applied
    };
    let set_scope = |fx: &mut KernelFixture, scope: u8| {
        let mut s = fx.dp().maps().settings().unwrap();
        s.event_scope = scope;
        fx.dp().maps().set_settings(&s).unwrap();
    };
    fx.events();
    let before = fx.counters();
    let mut xs: [Vec<f64>; 5] = Default::default();
    for shot in 0..sc.single_shots {
        for k in 0..xs.len() {
            let part = (k + shot) % xs.len();
            let x = match part {
                0 => {
                    set_scope(fx, EVENT_SCOPE_ALL);
                    clear_conntrack(fx);
                    run_ns(fx, program_names::NOOP, &syn, pa, 1, ACT_PASS)
                }
                1 => {
                    set_scope(fx, EVENT_SCOPE_ALL);
                    clear_conntrack(fx);
                    run_ns(fx, ingress, &syn, pa, 1, ACT_PASS)
                }
                2 => {
                    set_scope(fx, EVENT_SCOPE_DENY);
                    clear_conntrack(fx);
                    run_ns(fx, ingress, &syn, pa, 1, ACT_PASS)
                }
                3 => {
                    fx.dp().maps().put_pod(pa, &default_allow).unwrap();
                    set_scope(fx, EVENT_SCOPE_DENY);
                    clear_conntrack(fx);
                    let x = run_ns(fx, ingress, &syn, pa, 1, ACT_PASS);
                    fx.dp().maps().put_pod(pa, &applied).unwrap();
                    x
                }
                _ => {
                    // Two flows tracked, then the same steps as the others (the other
                    // flow's entry is the one removed) before the first flow's ACK.
                    set_scope(fx, EVENT_SCOPE_DENY);
                    clear_conntrack(fx);
                    run_ns(fx, ingress, &syn, pa, 1, ACT_PASS);
                    run_ns(fx, ingress, &other, pa, 1, ACT_PASS);
                    set_scope(fx, EVENT_SCOPE_DENY);
                    let tracked = fx.dp().maps().conntrack();
                    assert_eq!(tracked.len(), 2, "both flows tracked");
                    let key = tracked
                        .iter()
                        .find(|e| e.key.peer_port == 7)
                        .expect("the other flow's entry")
                        .key;
                    fx.dp().maps().remove_conntrack(&key).unwrap();
                    let before = fx.counters().conntrack_inserts;
                    let x = run_ns(fx, ingress, &ack, pa, 1, ACT_PASS);
                    assert_eq!(
                        fx.counters().conntrack_inserts,
                        before,
                        "a hit inserts nothing"
                    );
                    x
                }
            };
            xs[part].push(x);
        }
    }
    set_scope(fx, EVENT_SCOPE_ALL);
    let after = fx.counters();
    let shots = sc.single_shots as u64;
    // Per round: the full path, the two without an event and the cold hit's two SYNs
    // each insert once; only the full path sends its event, the other four are
    // filtered by the scope.
    assert_eq!(
        after.conntrack_inserts - before.conntrack_inserts,
        5 * shots,
        "every new flow tracked"
    );
    assert_eq!(fx.events().len() as u64, shots, "one event per full shot");
    assert_eq!(
        after.events_filtered_scope - before.events_filtered_scope,
        4 * shots,
        "the other new flows' events filtered"
    );
    assert_eq!(after.events_lost, before.events_lost);
    let [noop_r1, full, no_event, no_policy, cold_hit] = xs.map(Stat::of);
    NewFlowParts {
        noop_r1,
        full,
        no_event,
        no_policy,
        cold_hit,
    }
}

/// Issue 17's figures: the pod under 100 Admin cluster rules.
struct Admin {
    /// A new flow denied by the 100th Admin rule (repeats; one event each).
    deny: Stat,
    noop_r1: Stat,
    /// A new flow allowed by a NetworkPolicy rule behind the Admin rules (single shot).
    new_flow: Stat,
    /// A tracked flow's next packets with the Admin rules in place.
    ct_hit: Stat,
}

/// The pod's ingress under 100 Admin rules, as the resolver folds them into its
/// entries (Admin rules first, in evaluation order, then the NetworkPolicy's): rules
/// 0..62 cover the 1,000 prefixes' peers (TCP 1000+i, accept and deny in turn), rules
/// 62..99 one /24 each of 10.30.0.0/16 (deny TCP 80), and the 100th denies TCP 81
/// from the same peers as the first 62. A peer of the 1,000 prefixes thus finds a
/// full list (64 rules, the most a list holds): 62 Admin rules that do not match, the
/// 100th, then the NetworkPolicy rule admitting TCP 80. Measured in a policy set of
/// its own; the pod's record is restored afterwards.
fn admin100(
    fx: &mut KernelFixture,
    sc: &Scale,
    pa: u32,
    pod: IpAddr,
    peer: IpAddr,
    admin_set: u32,
    np_rule: Rule,
) -> Admin {
    let base = policy::tiers::CLUSTER_RULE_ID_BASE;
    let admin_rule = |i: u32, port: u16, action: u8| Rule {
        action,
        ..rule(PROTO_TCP, port, port, base + i)
    };
    let mut folded: Vec<Rule> = (0..62)
        .map(|i| {
            let action = if i % 2 == 0 { RULE_ACCEPT } else { RULE_DENY };
            admin_rule(i, 1000 + i as u16, action)
        })
        .collect();
    folded.push(admin_rule(99, 81, RULE_DENY));
    folded.push(np_rule);
    assert_eq!(folded.len(), MAX_RULES_PER_LIST);
    let folded_list = 20;
    fx.dp().maps().put_rule_list(folded_list, &folded).unwrap();
    for i in 62..99u32 {
        let id = folded_list + 1 + i;
        fx.dp()
            .maps()
            .put_rule_list(id, &[admin_rule(i, 80, RULE_DENY), np_rule])
            .unwrap();
        let addr = IpAddr::from([10, 30, (i - 62) as u8, 0]);
        let (key, len) = datapath_common::policy_key(admin_set, DIRECTION_INGRESS, addr, 24);
        fx.dp().maps().put_entry(&key, len, id).unwrap();
    }
    for i in 0..500u32 {
        for (addr, bits) in [
            (
                IpAddr::from([10, 20 + (i / 256) as u8, (i % 256) as u8, 0]),
                24,
            ),
            (IpAddr::from([0xfd00, 0x20, i as u16, 0, 0, 0, 0, 0]), 64),
        ] {
            let (key, len) = datapath_common::policy_key(admin_set, DIRECTION_INGRESS, addr, bits);
            fx.dp().maps().put_entry(&key, len, folded_list).unwrap();
        }
    }
    let plain = fx.dp().maps().pod(pa).unwrap();
    let mut rec = plain;
    rec.policy_set = admin_set;
    fx.dp().maps().put_pod(pa, &rec).unwrap();
    let (ingress, noop) = (program_names::POD_INGRESS, program_names::NOOP);

    // Denied by the 100th rule: its id in the event, one event per repeat.
    let deny_frame = Frame::tcp(peer, 5, pod, 81, TCP_SYN).build();
    fx.events();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &deny_frame), ACT_DROP);
    let events = fx.events();
    assert_eq!(events.len(), 1, "one event for the denied flow");
    assert_eq!(
        (events[0].verdict, events[0].policy_id),
        (VERDICT_DENY, base + 99),
        "the 100th Admin rule decided"
    );
    let before = fx.counters();
    let deny = measure(fx, sc, ingress, &deny_frame, pa, ACT_DROP, true);
    let after = fx.counters();
    assert_eq!(after.events_lost, before.events_lost);
    assert_eq!(
        after.events_submitted - before.events_submitted,
        sc.runs as u64 * u64::from(sc.repeat),
        "every repeat was a full evaluation"
    );

    // Allowed by the NetworkPolicy rule behind them: a new flow each shot.
    let allow_frame = Frame::tcp(peer, 6, pod, 80, TCP_SYN).build();
    let noop_frame = Frame::tcp(peer, 6, pod, 80, TCP_SYN).build();
    let mut new_flow = Vec::new();
    let mut noop_r1 = Vec::new();
    for shot in 0..sc.single_shots {
        clear_conntrack(fx);
        new_flow.push(run_ns(fx, ingress, &allow_frame, pa, 1, ACT_PASS));
        noop_r1.push(run_ns(fx, noop, &noop_frame, pa, 1, ACT_PASS));
        let events = fx.events();
        if shot == 0 {
            assert_eq!(
                events.iter().map(|e| e.policy_id).collect::<Vec<_>>(),
                vec![np_rule.policy_id],
                "the NetworkPolicy rule behind the Admin rules allowed"
            );
        }
    }

    // A tracked flow's next packets.
    assert_eq!(
        fx.run(
            DIRECTION_INGRESS,
            pa,
            &Frame::tcp(peer, 9, pod, 80, TCP_SYN).build()
        ),
        ACT_PASS
    );
    fx.events();
    let hit_frame = Frame::tcp(peer, 9, pod, 80, TCP_ACK).build();
    let ct_hit = measure(fx, sc, ingress, &hit_frame, pa, ACT_PASS, true);
    assert!(fx.events().is_empty(), "conntrack hits send no events");
    fx.dp().maps().put_pod(pa, &plain).unwrap();
    Admin {
        deny,
        noop_r1: Stat::of(noop_r1),
        new_flow: Stat::of(new_flow),
        ct_hit,
    }
}

/// Issue 18's per-flow record cost in userspace: one sweep of `sweep_flows` open
/// flows (records on, none due), then one that ends them all with their final records.
struct SweepCost {
    live_ns_per_flow: f64,
    end_ns_per_flow: f64,
}

fn sweep_cost(fx: &mut KernelFixture, sc: &Scale, pa: u32, pod: IpAddr, peer: IpAddr) -> SweepCost {
    clear_conntrack(fx);
    fx.events();
    for i in 0..sc.sweep_flows {
        let frame = Frame::tcp(peer, 20_000 + i as u16, pod, 80, TCP_SYN).build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &frame), ACT_PASS);
        if i % 1000 == 999 {
            fx.events();
        }
    }
    fx.events();
    let flows = sc.sweep_flows as usize;
    assert_eq!(
        fx.dp().maps().conntrack().len(),
        flows,
        "one entry per flow"
    );
    let mut sweeper = FlowSweeper::new(RecordOptions {
        enabled: true,
        interval: Duration::ZERO,
    });
    let mut records = Vec::new();
    let now = coarse_now_ns();
    let started = Instant::now();
    let counts = sweeper
        .sweep(fx.dp().maps(), now, Duration::from_secs(3600), &mut records)
        .unwrap();
    let live = started.elapsed();
    assert_eq!(counts.live, flows as u64);
    assert!(records.is_empty(), "no flow ended and none is due a record");
    let started = Instant::now();
    let counts = sweeper
        .sweep(
            fx.dp().maps(),
            now + 7_200_000_000_000,
            Duration::from_secs(3600),
            &mut records,
        )
        .unwrap();
    let end = started.elapsed();
    assert_eq!((counts.live, counts.removed), (0, flows as u64));
    assert_eq!(records.len(), flows, "a final record per flow");
    assert!(
        records
            .iter()
            .all(|r| r.forward().0 == 1 && r.forward().1 > 0 && r.reverse() == (0, 0)),
        "each record holds its flow's one packet"
    );
    SweepCost {
        live_ns_per_flow: live.as_nanos() as f64 / flows as f64,
        end_ns_per_flow: end.as_nanos() as f64 / flows as f64,
    }
}

/// Back-to-back comparison (issues 17 and 18), full mode only. Set any of:
/// - `NETPOL_BENCH_BEFORE_RECORDS`: this bench built at the commit before flow records
///   (05b570f^),
/// - `NETPOL_BENCH_BEFORE_TIERS`: this bench built at the commit before the cluster
///   tiers reached the kernel (6058af6^),
/// - `NETPOL_BENCH_INCUMBENT`: the incumbent harness's `bench.sh` (run with PROCS=1).
///
/// The older benches need `NETPOL_BENCH_CASES_ONLY=1` (skip map memory and loads); a
/// tree before it has the same few lines patched in (and at both commits the agent
/// crate needs a stub `ConntrackChores` in daemon.rs to build). Build each in a `git
/// worktree` with a target directory of its own:
/// `CARGO_TARGET_DIR=/work/target-ct cargo bench -p integration --bench datapath --no-run`. `NETPOL_BENCH_ROUNDS` (default 3)
/// rounds each run this bench (cases only, as a child) and every baseline once, the
/// order rotating per round; per source and case the net figure (case - its floor, from
/// the same process) is the median over rounds, with its spread. Ratios against the
/// targets are printed, with the incumbent also the new flow's conntrack insert and ring
/// event beside issue 18's budget (0.6x the incumbent), then one JSON line.
mod compare {
    use std::{collections::BTreeMap, process::Command};

    const SOURCES: [(&str, &str); 3] = [
        ("before_records", "NETPOL_BENCH_BEFORE_RECORDS"),
        ("before_tiers", "NETPOL_BENCH_BEFORE_TIERS"),
        ("incumbent", "NETPOL_BENCH_INCUMBENT"),
    ];

    pub fn wanted() -> bool {
        SOURCES
            .iter()
            .any(|(_, var)| std::env::var_os(var).is_some())
    }

    type Figures = BTreeMap<String, f64>;

    fn command(name: &str, path: &str) -> Command {
        let mut c = Command::new(path);
        if name == "incumbent" {
            c.env("PROCS", "1");
        } else {
            c.arg("--bench").env("NETPOL_BENCH_CASES_ONLY", "1");
        }
        for (_, var) in SOURCES {
            c.env_remove(var);
        }
        c.env_remove("NETPOL_BENCH_QUICK");
        c
    }

    /// The `*_ns` figures of the last JSON line a run printed.
    fn run_one(name: &str, path: &str) -> Figures {
        let out = command(name, path)
            .output()
            .unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name} failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("{name}: no JSON line"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with("_ns"))
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .collect()
    }

    /// The floor a case's net figure is taken from.
    fn floor_of(key: &str) -> &'static str {
        match key {
            "new_flow_1k_r1_ns" => "noop_r1_ns",
            "new_flow_1k_r1_undrained_ns" => "noop_r1_undrained_ns",
            "admin100_new_flow_r1_ns" => "admin100_noop_r1_ns",
            k if k.starts_with("parts_") => "parts_noop_r1_ns",
            _ => "noop_ns",
        }
    }

    struct Net {
        median: f64,
        min: f64,
        max: f64,
    }

    fn net(rounds: &[Figures], key: &str) -> Option<Net> {
        let mut xs: Vec<f64> = rounds
            .iter()
            .map(|f| Some(f.get(key)? - f.get(floor_of(key))?))
            .collect::<Option<_>>()?;
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(f64::total_cmp);
        Some(Net {
            median: xs[xs.len() / 2],
            min: xs[0],
            max: xs[xs.len() - 1],
        })
    }

    pub fn run() {
        let rounds: usize = std::env::var("NETPOL_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        let me = std::env::current_exe().unwrap().display().to_string();
        let mut sources = vec![("now".to_string(), me)];
        for (name, var) in SOURCES {
            if let Ok(path) = std::env::var(var) {
                sources.push((name.to_string(), path));
            }
        }
        let mut figures: BTreeMap<String, Vec<Figures>> = BTreeMap::new();
        for round in 0..rounds {
            for k in 0..sources.len() {
                let (name, path) = &sources[(k + round) % sources.len()];
                let f = run_one(name, path);
                eprintln!(
                    "round {round} {name}: ct_hit net {:.1}, new flow net {:.1}",
                    f["ct_hit_ns"] - f["noop_ns"],
                    f["new_flow_1k_r1_ns"] - f["noop_r1_ns"]
                );
                figures.entry(name.clone()).or_default().push(f);
            }
        }
        let names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
        let keys: Vec<String> = figures["now"][0]
            .keys()
            .filter(|k| !k.starts_with("noop") && !k.ends_with("noop_r1_ns"))
            .cloned()
            .collect();
        println!(
            "back to back, {rounds} rounds: net ns per case (median over rounds, spread), by source"
        );
        for key in &keys {
            let mut line = format!("{key:34}");
            for name in &names {
                match net(&figures[*name], key) {
                    Some(n) => {
                        line += &format!("  {name} {:7.1} ({:.1}..{:.1})", n.median, n.min, n.max)
                    }
                    None => line += &format!("  {name} -"),
                }
            }
            println!("{line}");
        }
        let mut json = String::from("{\"bench\":\"datapath_compare\"");
        json += &format!(",\"rounds\":{rounds}");
        let mut ratio = |label: &str, key: &str, a: &str, b: &str, target: Option<f64>| {
            let (Some(x), Some(y)) = (
                figures.get(a).and_then(|f| net(f, key)),
                figures.get(b).and_then(|f| net(f, key)),
            ) else {
                return;
            };
            let r = x.median / y.median;
            let verdict = match target {
                Some(t) if r <= t => format!("  (target <= {t:.2}: met)"),
                Some(t) => format!("  (target <= {t:.2}: NOT MET)"),
                None => String::new(),
            };
            println!(
                "{label:58} {a}/{b} {:.1}/{:.1} = {r:.3}{verdict}",
                x.median, y.median
            );
            json += &format!(",\"{label}\":{r:.3}");
        };
        println!("issue 18 (flow records):");
        ratio(
            "ct_hit_vs_before_records",
            "ct_hit_ns",
            "now",
            "before_records",
            Some(1.10),
        );
        ratio(
            "reply_vs_before_records",
            "reply_ns",
            "now",
            "before_records",
            None,
        );
        ratio(
            "new_flow_undrained_vs_incumbent",
            "new_flow_1k_r1_undrained_ns",
            "now",
            "incumbent",
            Some(0.60),
        );
        ratio(
            "new_flow_vs_incumbent",
            "new_flow_1k_r1_ns",
            "now",
            "incumbent",
            None,
        );
        ratio("ct_hit_vs_incumbent", "ct_hit_ns", "now", "incumbent", None);
        ratio(
            "deny_1k_vs_incumbent",
            "deny_1k_ns",
            "now",
            "incumbent",
            None,
        );
        println!("issue 17 (cluster tiers; no cluster policy in these cases):");
        for key in [
            "allow_default_ns",
            "ct_hit_ns",
            "reply_ns",
            "deny_1k_ns",
            "deny_1k_trie_ns",
            "new_flow_1k_r1_ns",
        ] {
            let case = key.trim_end_matches("_ns");
            ratio(
                &format!("{case}_vs_before_tiers"),
                key,
                "now",
                "before_tiers",
                Some(1.05),
            );
            ratio(
                &format!("{case}_tiers_only"),
                key,
                "before_records",
                "before_tiers",
                Some(1.05),
            );
        }
        // Issue 18's budget beside the two kernel operations every design that tracks
        // flows in a kernel map and reports them through the ring pays (the incumbent
        // pays both too): the insert (the no-policy shot less a tracked flow's cold
        // hit) and the ring event (the whole shot less the scope-filtered one).
        let part = |key: &str| net(&figures["now"], key).map(|n| n.median);
        if let (Some(no_policy), Some(cold_hit), Some(whole), Some(no_event), Some(incumbent)) = (
            part("parts_no_policy_r1_ns"),
            part("parts_cold_hit_r1_ns"),
            part("parts_new_flow_r1_ns"),
            part("parts_no_event_r1_ns"),
            figures
                .get("incumbent")
                .and_then(|f| net(f, "new_flow_1k_r1_undrained_ns")),
        ) {
            let insert = no_policy - cold_hit;
            let event = whole - no_event;
            let budget = 0.6 * incumbent.median;
            println!(
                "new flow: conntrack insert {insert:.1} + ACCEPT event {event:.1} = {:.1} ns, against the 0.60x budget of {budget:.1} ns (incumbent {:.1})",
                insert + event,
                incumbent.median
            );
            json += &format!(
                ",\"new_flow_insert_ns\":{insert:.1},\"new_flow_event_ns\":{event:.1},\"new_flow_budget_ns\":{budget:.1}"
            );
        }
        if let (Some(now), Some(before)) = (
            net(&figures["now"], "ct_hit_ns"),
            figures
                .get("before_records")
                .and_then(|f| net(f, "ct_hit_ns")),
        ) {
            let cost = now.median - before.median;
            println!("per-packet record cost on the conntrack hit path: {cost:.1} ns");
            json += &format!(",\"ct_hit_record_cost_ns\":{cost:.1}");
        }
        json += "}";
        println!("{json}");
    }
}
