//! `netpol-agent lab probe`: real connections between every pair of lab pods in both
//! families: a TCP connect, a UDP request and its echo, each with a timeout; SCTP is
//! reported as unsupported where the kernel has no SCTP sockets. Every probe runs on a
//! thread that enters the source pod's network namespace.

use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use serde::Serialize;

use super::manifests::LabPod;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Family {
    IPv4,
    IPv6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Protocol {
    TCP,
    UDP,
    SCTP,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::TCP),
            "udp" => Ok(Self::UDP),
            "sctp" => Ok(Self::SCTP),
            other => Err(format!("unknown protocol {other:?} (tcp, udp or sctp)")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Connected,
    Refused,
    Timeout,
    Unsupported,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub family: Family,
    pub protocol: Protocol,
    pub port: u16,
    pub connected: bool,
    pub result: Outcome,
}

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub ports: Vec<u16>,
    pub protocols: Vec<Protocol>,
    pub families: Vec<Family>,
    pub timeout: Duration,
}

/// Probes with at most this many threads at once.
const PARALLEL: usize = 32;

/// One probe to run: source pod key, its namespace, destination, family, protocol, port.
pub type Job = (String, String, LabPod, Family, Protocol, u16);

/// Runs every probe from each pod to each other pod (not to itself).
pub fn probe_all(pods: &[(LabPod, String)], spec: &ProbeSpec) -> Vec<Probe> {
    let mut jobs: Vec<Job> = Vec::new();
    for (src, netns) in pods {
        for (dst, _) in pods {
            if src.key() == dst.key() {
                continue;
            }
            for &family in &spec.families {
                for &protocol in &spec.protocols {
                    for &port in &spec.ports {
                        jobs.push((
                            src.key(),
                            netns.clone(),
                            dst.clone(),
                            family,
                            protocol,
                            port,
                        ));
                    }
                }
            }
        }
    }
    run_jobs(jobs, spec.timeout)
}

/// Runs `jobs`, at most [`PARALLEL`] at once.
pub fn run_jobs(jobs: Vec<Job>, timeout: Duration) -> Vec<Probe> {
    let mut results = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(PARALLEL) {
        let handles: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(from, netns, dst, family, protocol, port)| {
                std::thread::spawn(move || {
                    let addr = match family {
                        Family::IPv4 => IpAddr::V4(dst.ipv4),
                        Family::IPv6 => IpAddr::V6(dst.ipv6),
                    };
                    let result = probe_one(&netns, SocketAddr::new(addr, port), protocol, timeout);
                    Probe {
                        from,
                        to: dst.key(),
                        family,
                        protocol,
                        port,
                        connected: result == Outcome::Connected,
                        result,
                    }
                })
            })
            .collect();
        results.extend(handles.into_iter().filter_map(|h| h.join().ok()));
    }
    results
}

/// One probe from inside `netns`.
pub fn probe_one(netns: &str, to: SocketAddr, protocol: Protocol, timeout: Duration) -> Outcome {
    let Ok(_inside) = netlab::enter_by_name(netns) else {
        return Outcome::Unsupported;
    };
    match protocol {
        Protocol::TCP => match TcpStream::connect_timeout(&to, timeout) {
            Ok(_) => Outcome::Connected,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Refused,
            Err(_) => Outcome::Timeout,
        },
        Protocol::UDP => udp_probe(to, timeout),
        Protocol::SCTP => sctp_probe(to),
    }
}

fn udp_probe(to: SocketAddr, timeout: Duration) -> Outcome {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("addr")
    } else {
        "[::]:0".parse().expect("addr")
    };
    let Ok(socket) = UdpSocket::bind(bind) else {
        return Outcome::Unsupported;
    };
    if socket.connect(to).is_err() || socket.set_read_timeout(Some(timeout)).is_err() {
        return Outcome::Unsupported;
    }
    if socket.send(b"netpol-lab probe").is_err() {
        return Outcome::Refused;
    }
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Ok(_) => Outcome::Connected,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(_) => Outcome::Timeout,
    }
}

/// SCTP needs kernel support this machine lacks: say so instead of pass or fail.
fn sctp_probe(to: SocketAddr) -> Outcome {
    let domain = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd < 0 {
        return Outcome::Unsupported;
    }
    // SAFETY: fd came from socket(2) above.
    unsafe { libc::close(fd) };
    // A kernel with SCTP would be probed here; none of ours has it.
    Outcome::Unsupported
}

/// The matrix for people: one row per source, one column per destination, a cell per
/// family/protocol/port: "." connected, "r" refused (reachable, nothing listening),
/// "x" timed out (dropped), "-" unsupported.
pub fn matrix_table(probes: &[Probe]) -> String {
    let mut sources: Vec<&str> = probes.iter().map(|p| p.from.as_str()).collect();
    sources.sort();
    sources.dedup();
    let mut dests: Vec<&str> = probes.iter().map(|p| p.to.as_str()).collect();
    dests.sort();
    dests.dedup();
    let width = sources
        .iter()
        .chain(&dests)
        .map(|s| s.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!("{:width$} ", "from \\ to");
    for d in &dests {
        out.push_str(&format!(" {d:width$}"));
    }
    out.push('\n');
    for s in &sources {
        out.push_str(&format!("{s:width$} "));
        for d in &dests {
            let cell: String = probes
                .iter()
                .filter(|p| p.from == *s && p.to == *d)
                .map(|p| match p.result {
                    Outcome::Connected => '.',
                    Outcome::Refused => 'r',
                    Outcome::Timeout => 'x',
                    Outcome::Unsupported => '-',
                })
                .collect();
            let cell = if cell.is_empty() {
                "self".to_string()
            } else {
                cell
            };
            out.push_str(&format!(" {cell:width$}"));
        }
        out.push('\n');
    }
    out
}
