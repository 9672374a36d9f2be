//! A node namespace with pods wired VPC-CNI style and the datapath attached to their
//! host-side veths, for tests that send real traffic. Sockets are opened inside a
//! pod's namespace by a thread that enters it; they stay in that namespace.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use datapath::{AttachMode, Datapath, LoadOptions, PinLayout};
use datapath_common::*;
use netlab::{NetNs, PodLink, PodSpec, prepare_node, unique_name, wire_pod};

use crate::gate::require_root;

pub struct TestPod {
    pub ns: NetNs,
    pub link: PodLink,
    pub ipv4: IpAddr,
    pub ipv6: IpAddr,
}

pub struct PodNet {
    pub pods: Vec<TestPod>,
    pub node: NetNs,
    pub pins: PathBuf,
    pub mode: AttachMode,
}

impl PodNet {
    /// A node namespace and `count` pods (10.200.0.2.., fd00:200::2..).
    pub fn new(count: u8, mode: AttachMode) -> Self {
        Self::with_host_interfaces((0..count).map(|i| format!("eni{i}")).collect(), mode)
    }

    /// As [`PodNet::new`], one pod per host interface name given.
    pub fn with_host_interfaces(host_ifs: Vec<String>, mode: AttachMode) -> Self {
        require_root();
        let count = u8::try_from(host_ifs.len()).expect("at most 255 pods");
        let node = NetNs::create(&unique_name("npn")).expect("node namespace");
        prepare_node(&node).expect("node sysctls");
        let mut pods = Vec::new();
        for i in 0..count {
            let ns = NetNs::create(&unique_name("npp")).expect("pod namespace");
            let ipv4: IpAddr = format!("10.200.0.{}", i + 2).parse().unwrap();
            let ipv6: IpAddr = format!("fd00:200::{}", i + 2).parse().unwrap();
            let host_if = &host_ifs[usize::from(i)];
            let spec = PodSpec {
                host_if,
                ipv4: match ipv4 {
                    IpAddr::V4(a) => Some(a),
                    _ => None,
                },
                ipv6: match ipv6 {
                    IpAddr::V6(a) => Some(a),
                    _ => None,
                },
            };
            let link = wire_pod(&node, &ns, &spec).expect("wire pod");
            pods.push(TestPod {
                ns,
                link,
                ipv4,
                ipv6,
            });
        }
        let pins = PathBuf::from(format!("/sys/fs/bpf/{}", unique_name("netpol-traffic-")));
        Self {
            pods,
            node,
            pins,
            mode,
        }
    }

    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            pins: PinLayout::new(&self.pins),
            ring_bytes: 1 << 20,
            conntrack_entries: 4096,
            fold_entries: 4096,
            policy_hash_entries: 4096,
            attach_mode: self.mode,
            settings: Settings {
                fold_window_ns: 1_000_000_000,
                wakeup_threshold_bytes: 0,
                ..Settings::default()
            },
        }
    }

    /// Loads (or re-adopts) the datapath inside the node namespace and attaches it to
    /// every pod's host veth.
    pub fn load(&self) -> Datapath {
        let _in_node = self.node.enter().expect("enter node");
        let mut dp = Datapath::load(&self.load_options()).expect("load datapath");
        for pod in &self.pods {
            dp.attach(&pod.link.host_if).expect("attach");
        }
        dp
    }

    /// Loads inside the node namespace, re-adopting pins, attaching nothing new.
    pub fn load_adopting_only(&self) -> Datapath {
        let _in_node = self.node.enter().expect("enter node");
        Datapath::load(&self.load_options()).expect("load datapath")
    }

    /// The pod record of pod `i` with the given states.
    pub fn record(&self, i: usize, ingress: u8, egress: u8, policy_set: u32) -> PodRecord {
        let pod = &self.pods[i];
        let mut rec = PodRecord {
            policy_set,
            ingress_state: ingress,
            egress_state: egress,
            ..PodRecord::default()
        };
        if let IpAddr::V4(a) = pod.ipv4 {
            rec.ipv4 = a.octets();
            rec.addr_flags |= POD_HAS_IPV4;
        }
        if let IpAddr::V6(a) = pod.ipv6 {
            rec.ipv6 = a.octets();
            rec.addr_flags |= POD_HAS_IPV6;
        }
        rec
    }

    /// Runs `f` on a thread inside pod `i`'s namespace.
    pub fn in_pod<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let name = self.pods[i].ns.name().to_string();
        std::thread::spawn(move || {
            let _in_pod = netlab::enter_by_name(&name).expect("enter pod");
            f()
        })
        .join()
        .expect("pod thread")
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        if let Ok(_in_node) = self.node.enter()
            && let Ok(dp) = Datapath::load(&self.load_options())
            && let Err(e) = dp.remove_all()
        {
            eprintln!("podnet: removing the datapath failed: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}

/// A TCP server (accepts and echoes a line) and a UDP echo server on one port each,
/// inside a pod, until stopped.
pub struct Servers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Servers {
    pub fn start(net: &PodNet, pod: usize, tcp_ports: &[u16], udp_ports: &[u16]) -> Self {
        let tcp_ports = tcp_ports.to_vec();
        let udp_ports = udp_ports.to_vec();
        let (tcp, udp) = net.in_pod(pod, move || {
            let tcp: Vec<TcpListener> = tcp_ports
                .iter()
                .map(|p| TcpListener::bind(("::", *p)).expect("bind tcp"))
                .collect();
            let udp: Vec<UdpSocket> = udp_ports
                .iter()
                .map(|p| UdpSocket::bind(("::", *p)).expect("bind udp"))
                .collect();
            (tcp, udp)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for listener in tcp {
            listener.set_nonblocking(true).unwrap();
            let stop = stop.clone();
            handles.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut s, _)) => {
                            std::thread::spawn(move || {
                                s.set_nonblocking(false).ok();
                                // Far above any pause a slow machine takes (three program loads in a row).
                                s.set_read_timeout(Some(Duration::from_secs(600))).ok();
                                let mut buf = [0u8; 256];
                                while let Ok(n) = s.read(&mut buf) {
                                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        for socket in udp {
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let stop = stop.clone();
            handles.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            }));
        }
        Self { stop, handles }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Opens a TCP connection from inside pod `from`; returns the local address on
/// success.
pub fn tcp_connect(
    net: &PodNet,
    from: usize,
    to: SocketAddr,
    timeout: Duration,
) -> Option<(SocketAddr, TcpStream)> {
    net.in_pod(from, move || {
        let s = TcpStream::connect_timeout(&to, timeout).ok()?;
        Some((s.local_addr().ok()?, s))
    })
}

/// Sends one UDP datagram from inside pod `from` and waits for its echo; returns
/// the local address when the echo came back.
pub fn udp_echo(
    net: &PodNet,
    from: usize,
    to: SocketAddr,
    timeout: Duration,
) -> (SocketAddr, bool) {
    udp_echo_len(net, from, to, timeout, 5)
}

/// As [`udp_echo`] with a datagram of `len` bytes (large ones are fragmented).
pub fn udp_echo_len(
    net: &PodNet,
    from: usize,
    to: SocketAddr,
    timeout: Duration,
    len: usize,
) -> (SocketAddr, bool) {
    net.in_pod(from, move || {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(bind).expect("bind client");
        s.connect(to).expect("connect UDP");
        s.set_read_timeout(Some(timeout)).unwrap();
        let payload = vec![0x5a; len];
        s.send(&payload).expect("send");
        let mut buf = vec![0u8; len + 16];
        let ok = matches!(s.recv(&mut buf), Ok(n) if n == len);
        (s.local_addr().unwrap(), ok)
    })
}
