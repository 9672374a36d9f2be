//! Flow records with real traffic: pods in network namespaces, the programs on their
//! host veths, the conntrack sweep making records.
//!
//! How bytes count: a record's bytes are the lengths of the frames the datapath saw,
//! Ethernet header included, once per socket buffer: a GSO aggregate (several wire
//! packets) carries one set of Ethernet, IP and TCP headers for all its payload, and
//! counts `gso_segs` packets. The test checks them against an independent packet
//! capture (AF_PACKET on the same host veth, which sees the same socket buffers), and
//! the capture's TCP payload against what the sockets sent.
//!
//! Also: periodic records sum to the flow's final total, a UDP flow ends by idle
//! expiry with its exact frame bytes, under a full table every flow is either
//! reported or counted as evicted, and a flow carried by two CPUs (its own counting
//! with plain adds, the other with atomic adds) counts every packet once.

use std::{
    io::{Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use datapath::{AttachMode, Datapath, FlowSweeper, RecordOptions};
use datapath_common::{
    clock::monotonic_now_ns,
    record::{FlowEnd, FlowRecord},
    *,
};
use integration::{
    frames::{Frame, TCP_ACK, TCP_SYN},
    kernel::{ACT_PASS, FixtureOptions, KernelFixture},
    podnet::*,
};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Generous: a loaded machine may stall for seconds.
const DEADLINE: Duration = Duration::from_secs(60);
const SENT_CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 4;
const REPLY_BYTES: usize = 100_000;
const PORT: u16 = 7070;

/// Both pods default-allow: every flow is tracked and counted.
fn allow_all(net: &PodNet, dp: &mut Datapath) {
    for i in 0..2 {
        let rec = net.record(i, STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW, 1 + i as u32);
        dp.maps()
            .put_pod(net.pods[i].link.host_ifindex, &rec)
            .unwrap();
    }
}

/// Frames one host veth carried for one TCP or UDP flow, by direction as seen from
/// the pod (outgoing on the host veth = into the pod).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Captured {
    frames: [u64; 2],
    bytes: [u64; 2],
    payload: [u64; 2],
}

/// One captured frame: its packet type (`PACKET_OUTGOING`...), its first bytes and
/// its whole length.
type Frame128 = (u8, Vec<u8>, usize);

/// An AF_PACKET capture on one host veth, in the node namespace, until stopped.
struct Capture {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Frame128>>>,
}

impl Capture {
    fn start(net: &PodNet, ifindex: u32) -> Self {
        let node = net.node.name().to_string();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = std::thread::spawn(move || {
            let _in_node = netlab::enter_by_name(&node).expect("enter node");
            let fd = packet_socket(ifindex);
            ready_tx.send(()).unwrap();
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 1 << 17];
            loop {
                // SAFETY: sockaddr_ll is plain data; recvfrom writes at most its size.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: buf and from are live and writable for the lengths given.
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_TRUNC,
                        std::ptr::from_mut(&mut from).cast(),
                        &mut from_len,
                    )
                };
                if n < 0 {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                }
                let len = n as usize;
                let kept = len.min(128).min(buf.len());
                frames.push((from.sll_pkttype, buf[..kept].to_vec(), len));
            }
            frames
        });
        ready_rx.recv_timeout(DEADLINE).expect("capture started");
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and sums the frames of the TCP/UDP flow between `pod` and `peer`.
    fn finish(mut self, protocol: u8, pod: SocketAddr, peer: SocketAddr) -> Captured {
        self.stop.store(true, Ordering::Relaxed);
        let frames = self.handle.take().unwrap().join().unwrap();
        let mut c = Captured::default();
        for (pkttype, head, len) in frames {
            let Some((src, dst, payload_offset)) = flow_of(&head, protocol) else {
                continue;
            };
            let into_pod = if src == peer && dst == pod {
                true
            } else if src == pod && dst == peer {
                false
            } else {
                continue;
            };
            assert_eq!(
                into_pod,
                pkttype == libc::PACKET_OUTGOING,
                "direction from the tap agrees with the addresses"
            );
            let d = if into_pod {
                DIRECTION_INGRESS
            } else {
                DIRECTION_EGRESS
            } as usize;
            c.frames[d] += 1;
            c.bytes[d] += len as u64;
            c.payload[d] += (len - payload_offset) as u64;
        }
        c
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn packet_socket(ifindex: u32) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    assert!(
        raw >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: raw is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let rcvbuf: libc::c_int = 32 << 20;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: setsockopt with pointers to live values of the sizes given.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&rcvbuf).cast(),
            size_of::<libc::c_int>() as u32,
        );
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&timeout).cast(),
            size_of::<libc::timeval>() as u32,
        );
    }
    // SAFETY: sockaddr_ll is plain data.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: addr is a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            raw,
            std::ptr::from_ref(&addr).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    fd
}

/// Source, destination and payload offset of an Ethernet/IPv4 frame of `protocol`.
fn flow_of(frame: &[u8], protocol: u8) -> Option<(SocketAddr, SocketAddr, usize)> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[23] != protocol {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    let src_ip = IpAddr::from(<[u8; 4]>::try_from(&frame[26..30]).ok()?);
    let dst_ip = IpAddr::from(<[u8; 4]>::try_from(&frame[30..34]).ok()?);
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    let header = if protocol == PROTO_TCP {
        usize::from(frame.get(l4 + 12)? >> 4) * 4
    } else {
        8
    };
    Some((
        SocketAddr::new(src_ip, port(l4)),
        SocketAddr::new(dst_ip, port(l4 + 2)),
        l4 + header,
    ))
}

/// Sweeps until `done` holds for the records made so far; panics after [`DEADLINE`].
fn sweep_until(
    sweeper: &mut FlowSweeper,
    dp: &mut Datapath,
    idle: Duration,
    records: &mut Vec<FlowRecord>,
    done: impl Fn(&[FlowRecord]) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        sweeper
            .sweep(dp.maps(), monotonic_now_ns(), idle, records)
            .expect("sweep");
        if done(records) {
            return;
        }
        assert!(Instant::now() < deadline, "records so far: {records:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn of_flow(records: &[FlowRecord], ifindex: u32, peer_port: u16) -> Vec<FlowRecord> {
    records
        .iter()
        .filter(|r| r.key.ifindex == ifindex && r.key.peer_port == peer_port)
        .copied()
        .collect()
}

fn sum(records: &[FlowRecord]) -> ([u64; 2], [u64; 2]) {
    records.iter().fold(([0; 2], [0; 2]), |(p, b), r| {
        (
            [p[0] + r.packets[0], p[1] + r.packets[1]],
            [b[0] + r.bytes[0], b[1] + r.bytes[1]],
        )
    })
}

#[test]
fn a_tcp_transfer_gives_records_of_the_bytes_the_datapath_saw_and_periodic_ones_sum_to_it() {
    let net = PodNet::new(2, AttachMode::Tcx);
    let mut dp = net.load();
    allow_all(&net, &mut dp);
    let server_if = net.pods[1].link.host_ifindex;
    let server = SocketAddr::new(net.pods[1].ipv4, PORT);
    // Server: reads to EOF, answers REPLY_BYTES, closes.
    let listener = net.in_pod(1, move || TcpListener::bind(server).expect("bind"));
    let received = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        s.write_all(&vec![0x42; REPLY_BYTES]).expect("reply");
        got.len()
    });
    let capture = Capture::start(&net, server_if);
    // Every sweep makes a periodic record of an open flow that moved.
    let mut sweeper = FlowSweeper::new(RecordOptions {
        enabled: true,
        interval: Duration::from_nanos(1),
    });
    let idle = Duration::from_secs(3600);
    let mut records = Vec::new();
    let (local, mut stream) = tcp_connect(&net, 0, server, TIMEOUT).expect("connect");
    for _ in 0..CHUNKS {
        stream.write_all(&[0x5a; SENT_CHUNK]).expect("send");
        stream.flush().unwrap();
        sweeper
            .sweep(dp.maps(), monotonic_now_ns(), idle, &mut records)
            .expect("sweep");
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("reply");
    assert_eq!(reply.len(), REPLY_BYTES);
    assert_eq!(received.join().unwrap(), SENT_CHUNK * CHUNKS);
    drop(stream);
    sweep_until(&mut sweeper, &mut dp, idle, &mut records, |r| {
        of_flow(r, server_if, local.port())
            .iter()
            .any(|r| r.end.is_final())
    });
    let captured = capture.finish(PROTO_TCP, server, local);

    let flow = of_flow(&records, server_if, local.port());
    let (last, periodic) = flow.split_last().unwrap();
    assert_eq!(last.end, FlowEnd::TcpFin, "{flow:#?}");
    assert!(periodic.iter().all(|r| r.end == FlowEnd::Open), "{flow:#?}");
    assert!(!periodic.is_empty(), "at least one periodic record");
    assert_eq!(
        last.origin_direction, DIRECTION_INGRESS,
        "the client opened it"
    );
    for pair in flow.windows(2) {
        assert_eq!(pair[0].end_ns, pair[1].start_ns, "records are contiguous");
    }
    // The capture saw what the sockets sent, so it saw the whole flow.
    assert_eq!(
        captured.payload,
        [(SENT_CHUNK * CHUNKS) as u64, REPLY_BYTES as u64]
    );
    let (packets, bytes) = sum(&flow);
    assert_eq!(bytes, captured.bytes, "record bytes = frame bytes captured");
    for d in 0..2 {
        // GSO aggregates count their wire packets; the tap sees each aggregate once.
        assert!(packets[d] >= captured.frames[d], "{packets:?} {captured:?}");
    }
    assert!(
        dp.maps()
            .conntrack()
            .iter()
            .all(|e| e.key.ifindex != server_if || e.key.peer_port != local.port()),
        "the closed flow's entry is gone"
    );
}

#[test]
fn a_udp_flow_ends_by_idle_expiry_with_its_frame_bytes() {
    let net = PodNet::new(2, AttachMode::Tcx);
    let mut dp = net.load();
    allow_all(&net, &mut dp);
    let _servers = Servers::start(&net, 1, &[], &[9090]);
    let server_if = net.pods[1].link.host_ifindex;
    let (local, echoed) = udp_echo_len(
        &net,
        0,
        SocketAddr::new(net.pods[1].ipv4, 9090),
        TIMEOUT,
        100,
    );
    assert!(echoed);
    let mut sweeper = FlowSweeper::new(RecordOptions {
        enabled: true,
        interval: Duration::ZERO,
    });
    let mut records = Vec::new();
    sweep_until(
        &mut sweeper,
        &mut dp,
        Duration::from_millis(200),
        &mut records,
        |r| !of_flow(r, server_if, local.port()).is_empty(),
    );
    let flow = of_flow(&records, server_if, local.port());
    assert_eq!(flow.len(), 1, "interval 0: only the final record");
    let r = flow[0];
    assert_eq!(r.end, FlowEnd::Idle);
    // 14 Ethernet + 20 IPv4 + 8 UDP + 100 payload, one datagram each way.
    assert_eq!(r.packets, [1, 1]);
    assert_eq!(r.bytes, [142, 142]);
    assert_eq!(r.origin_direction, DIRECTION_INGRESS);
    assert!(r.start_ns <= r.end_ns);
}

#[test]
fn under_a_full_table_every_flow_is_reported_or_counted_as_evicted() {
    let mut fx = KernelFixture::with_options(&["pa"], FixtureOptions::default());
    let pa = fx.ifindex("pa");
    let pod: IpAddr = "10.1.0.2".parse().unwrap();
    let peer: IpAddr = "10.9.0.1".parse().unwrap();
    fx.set_pod(pa, &[pod], STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let mut sweeper = FlowSweeper::new(RecordOptions {
        enabled: true,
        interval: Duration::ZERO,
    });
    let idle = Duration::from_secs(3600);
    let mut records = Vec::new();
    let first = sweeper
        .sweep(fx.dp().maps(), monotonic_now_ns(), idle, &mut records)
        .unwrap();
    assert_eq!((first.live, first.evicted_total), (0, 0));
    // The fixture's table holds 4,096 entries.
    let flows = 6_000u32;
    for i in 0..flows {
        let frame = Frame::tcp(
            peer,
            1024 + (i % 60_000) as u16,
            pod,
            80 + (i / 60_000) as u16,
            TCP_SYN,
        )
        .build();
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &frame), ACT_PASS);
    }
    let full = sweeper
        .sweep(fx.dp().maps(), monotonic_now_ns(), idle, &mut records)
        .unwrap();
    let kernel = fx.counters();
    assert_eq!(kernel.conntrack_inserts, u64::from(flows));
    assert!(full.live <= 4096 && full.live > 0, "{full:?}");
    assert_eq!(full.evicted_total, u64::from(flows) - full.live);
    assert!(records.is_empty(), "no flow ended yet");
    // End every live flow: each gets its record; the evicted ones stay counted.
    let ended = sweeper
        .sweep(
            fx.dp().maps(),
            monotonic_now_ns() + 2 * idle.as_nanos() as u64,
            idle,
            &mut records,
        )
        .unwrap();
    assert_eq!(ended.removed, full.live);
    assert_eq!(ended.live, 0);
    assert_eq!(ended.evicted_total, full.evicted_total);
    assert_eq!(records.len() as u64 + ended.evicted_total, u64::from(flows));
    assert!(
        records
            .iter()
            .all(|r| r.end == FlowEnd::Idle && r.packets == [1, 0])
    );
}

/// Pins the calling thread to `cpu` (BPF_PROG_TEST_RUN runs the program on the
/// caller's CPU).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity
    // get a pointer to it and its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "pinning to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn a_flow_carried_by_two_cpus_counts_every_packet_once() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    // A thread of its own: the pinning stays with it.
    std::thread::spawn(|| {
        let mut fx = KernelFixture::with_options(&["pa"], FixtureOptions::default());
        let pa = fx.ifindex("pa");
        let pod: IpAddr = "10.1.0.2".parse().unwrap();
        let peer: IpAddr = "10.9.0.1".parse().unwrap();
        fx.set_pod(pa, &[pod], STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
        let syn = Frame::tcp(peer, 4321, pod, 80, TCP_SYN).build();
        let inbound = Frame {
            payload_len: 100,
            ..Frame::tcp(peer, 4321, pod, 80, TCP_ACK)
        }
        .build();
        let outbound = Frame {
            payload_len: 300,
            ..Frame::tcp(pod, 80, peer, 4321, TCP_ACK)
        }
        .build();
        let ingress = DIRECTION_INGRESS as usize;
        let egress = DIRECTION_EGRESS as usize;
        pin_to_cpu(0);
        assert_eq!(fx.run(DIRECTION_INGRESS, pa, &syn), ACT_PASS);
        for _ in 0..3 {
            assert_eq!(fx.run(DIRECTION_INGRESS, pa, &inbound), ACT_PASS);
        }
        pin_to_cpu(1);
        for _ in 0..4 {
            assert_eq!(fx.run(DIRECTION_INGRESS, pa, &inbound), ACT_PASS);
        }
        for _ in 0..2 {
            assert_eq!(fx.run(DIRECTION_EGRESS, pa, &outbound), ACT_PASS);
        }
        pin_to_cpu(0);
        assert_eq!(fx.run(DIRECTION_EGRESS, pa, &outbound), ACT_PASS);
        let entries = fx.dp().maps().conntrack();
        assert_eq!(entries.len(), 1, "one flow");
        let ct = entries[0].value;
        assert_eq!(ct.owner_cpu, 0, "the CPU that tracked the flow owns it");
        let mut owner = [0; 2];
        owner[ingress] = 4;
        owner[egress] = 1;
        let mut shared = [0; 2];
        shared[ingress] = 4;
        shared[egress] = 2;
        assert_eq!((ct.packets, ct.shared_packets), (owner, shared));
        let mut packets = [0; 2];
        packets[ingress] = 8;
        packets[egress] = 3;
        let mut bytes = [0; 2];
        bytes[ingress] = (syn.len() + 7 * inbound.len()) as u64;
        bytes[egress] = 3 * outbound.len() as u64;
        assert_eq!((ct.total_packets(), ct.total_bytes()), (packets, bytes));
        // The flow's record holds the totals.
        let mut sweeper = FlowSweeper::new(RecordOptions {
            enabled: true,
            interval: Duration::ZERO,
        });
        let mut records = Vec::new();
        let idle = Duration::from_secs(3600);
        let later = monotonic_now_ns() + 2 * idle.as_nanos() as u64;
        sweeper
            .sweep(fx.dp().maps(), later, idle, &mut records)
            .unwrap();
        assert_eq!(records.len(), 1, "one final record");
        assert_eq!((records[0].packets, records[0].bytes), (packets, bytes));
    })
    .join()
    .unwrap();
}
