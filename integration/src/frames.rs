//! Packet builders for BPF_PROG_TEST_RUN: Ethernet (optionally 802.1Q-tagged) frames
//! carrying IPv4 (optionally with options, optionally a fragment) or IPv6 (optionally
//! with extension headers), and TCP, UDP, SCTP, ICMP or ICMPv6 on top.

use std::net::IpAddr;

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_PSH: u8 = 0x08;

/// The L4 part of a frame.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Sctp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP or ICMPv6 (by family) with a type, code and 4 bytes of "rest of header"
    /// (identifier and sequence for echo), then `payload`.
    Icmp {
        icmp_type: u8,
        code: u8,
        rest: [u8; 4],
        payload: Vec<u8>,
    },
    /// Any other protocol number with an opaque payload.
    Raw {
        protocol: u8,
        payload: Vec<u8>,
    },
}

/// A frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub vlan: Option<u16>,
    /// Bytes of IPv4 options (a multiple of 4, at most 40).
    pub ipv4_options: usize,
    /// IPv6 destination-options headers placed before the L4 header.
    pub ipv6_ext_headers: usize,
    /// (identification, fragment offset in 8-byte units, more fragments).
    pub fragment: Option<(u32, u16, bool)>,
    pub payload_len: usize,
}

impl Frame {
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        Self {
            src,
            dst,
            l4,
            vlan: None,
            ipv4_options: 0,
            ipv6_ext_headers: 0,
            fragment: None,
            payload_len: 0,
        }
    }

    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, flags: u8) -> Self {
        Self::new(
            src,
            dst,
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            },
        )
    }

    pub fn udp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        Self::new(src, dst, L4::Udp { src_port, dst_port })
    }

    pub fn sctp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        Self::new(src, dst, L4::Sctp { src_port, dst_port })
    }

    /// An echo request (or reply) with identifier `id`.
    pub fn echo(src: IpAddr, dst: IpAddr, id: u16, request: bool) -> Self {
        let icmp_type = match (src.is_ipv4(), request) {
            (true, true) => 8,
            (true, false) => 0,
            (false, true) => 128,
            (false, false) => 129,
        };
        let [a, b] = id.to_be_bytes();
        Self::new(
            src,
            dst,
            L4::Icmp {
                icmp_type,
                code: 0,
                rest: [a, b, 0, 1],
                payload: Vec::new(),
            },
        )
    }

    /// An ICMP error of `icmp_type` quoting `quoted` (an IP packet, no Ethernet).
    pub fn icmp_error(src: IpAddr, dst: IpAddr, icmp_type: u8, quoted: Vec<u8>) -> Self {
        Self::new(
            src,
            dst,
            L4::Icmp {
                icmp_type,
                code: 0,
                rest: [0; 4],
                payload: quoted,
            },
        )
    }

    pub fn with_vlan(mut self, tag: u16) -> Self {
        self.vlan = Some(tag);
        self
    }

    pub fn with_ipv4_options(mut self, bytes: usize) -> Self {
        self.ipv4_options = bytes;
        self
    }

    pub fn with_ipv6_ext_headers(mut self, count: usize) -> Self {
        self.ipv6_ext_headers = count;
        self
    }

    pub fn with_fragment(mut self, id: u32, offset_units: u16, more: bool) -> Self {
        self.fragment = Some((id, offset_units, more));
        self
    }

    pub fn with_payload(mut self, len: usize) -> Self {
        self.payload_len = len;
        self
    }

    /// The Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let ip = self.ip_packet();
        let mut f = Vec::with_capacity(18 + ip.len());
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        if let Some(tag) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&tag.to_be_bytes());
        }
        let ethertype: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }

    /// The IP packet alone (what an ICMP error quotes).
    pub fn ip_packet(&self) -> Vec<u8> {
        let (protocol, l4) = self.l4_bytes();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ihl = 20 + self.ipv4_options;
                let mut h = vec![0u8; ihl];
                h[0] = 0x40 | (ihl / 4) as u8;
                h[2..4].copy_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
                if let Some((id, offset, more)) = self.fragment {
                    h[4..6].copy_from_slice(&(id as u16).to_be_bytes());
                    let field = offset | if more { 0x2000 } else { 0 };
                    h[6..8].copy_from_slice(&field.to_be_bytes());
                }
                h[8] = 64;
                h[9] = protocol;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                for b in h.iter_mut().skip(20) {
                    *b = 1; // NOP options
                }
                let sum = checksum(&h);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                h.extend_from_slice(&l4);
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ext = Vec::new();
                let mut headers: Vec<(u8, Vec<u8>)> = Vec::new();
                for _ in 0..self.ipv6_ext_headers {
                    headers.push((60, vec![0u8; 8]));
                }
                if let Some((id, offset, more)) = self.fragment {
                    let mut fh = vec![0u8; 8];
                    let field = (offset << 3) | u16::from(more);
                    fh[2..4].copy_from_slice(&field.to_be_bytes());
                    fh[4..8].copy_from_slice(&id.to_be_bytes());
                    headers.push((44, fh));
                }
                let first_next = headers.first().map_or(protocol, |h| h.0);
                for (i, (_, mut body)) in headers.clone().into_iter().enumerate() {
                    body[0] = headers.get(i + 1).map_or(protocol, |h| h.0);
                    ext.extend_from_slice(&body);
                }
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
                h[6] = first_next;
                h[7] = 64;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                h.extend_from_slice(&ext);
                h.extend_from_slice(&l4);
                h
            }
            _ => panic!(
                "frame with mixed address families: {} -> {}",
                self.src, self.dst
            ),
        }
    }

    fn l4_bytes(&self) -> (u8, Vec<u8>) {
        let later_fragment = self.fragment.is_some_and(|(_, offset, _)| offset != 0);
        let payload = vec![0xabu8; self.payload_len];
        let (protocol, mut header) = match &self.l4 {
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&src_port.to_be_bytes());
                h[2..4].copy_from_slice(&dst_port.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = *flags;
                (6, h)
            }
            L4::Udp { src_port, dst_port } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&src_port.to_be_bytes());
                h[2..4].copy_from_slice(&dst_port.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                (17, h)
            }
            L4::Sctp { src_port, dst_port } => {
                let mut h = vec![0u8; 12];
                h[0..2].copy_from_slice(&src_port.to_be_bytes());
                h[2..4].copy_from_slice(&dst_port.to_be_bytes());
                (132, h)
            }
            L4::Icmp {
                icmp_type,
                code,
                rest,
                payload,
            } => {
                let mut h = vec![*icmp_type, *code, 0, 0];
                h.extend_from_slice(rest);
                h.extend_from_slice(payload);
                (if self.src.is_ipv4() { 1 } else { 58 }, h)
            }
            L4::Raw { protocol, payload } => (*protocol, payload.clone()),
        };
        if later_fragment {
            // A later fragment carries payload only.
            header = vec![0xcd; header.len()];
        }
        header.extend_from_slice(&payload);
        (protocol, header)
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A frame that is not IP (an ARP request).
pub fn arp_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0u8; 28]);
    f
}
