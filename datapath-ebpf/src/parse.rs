//! Header parsing: Ethernet (one 802.1Q tag), IPv4 with options, IPv6 with a bounded
//! walk over extension headers, TCP/UDP/SCTP ports, ICMP/ICMPv6 type and echo id, and
//! the flow quoted inside an ICMP error. Only bounds-checked direct packet access.

use aya_ebpf::{cty::c_void, helpers::bpf_skb_load_bytes, programs::TcContext};
use datapath_common::{
    FAMILY_IPV4, FAMILY_IPV6, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
    is_icmp_echo, is_icmp_error,
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPV6_HLEN: usize = 40;
/// Extension headers walked before giving up (and treating the packet as opaque).
const MAX_IPV6_EXT_HEADERS: usize = 6;

pub const FRAG_NONE: u8 = 0;
pub const FRAG_FIRST: u8 = 1;
pub const FRAG_LATER: u8 = 2;

/// TCP flag bits.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What the datapath needs from one packet.
pub struct Packet {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub frag_id: u32,
    pub family: u8,
    pub protocol: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub frag: u8,
    pub icmp_error: bool,
    /// Offset of the L4 header (for the quoted packet of an ICMP error).
    pub l4_offset: usize,
}

/// The flow an ICMP error quotes, as it travelled.
pub struct Quoted {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
}

/// A checked pointer to a `T` at `offset`. `data` and `data_end` are read afresh
/// (volatile) for every access, so LLVM cannot reuse one bounds check for a pointer
/// it recomputed elsewhere, which the verifier would reject.
#[inline(always)]
fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    // SAFETY: ctx.skb.skb is the live __sk_buff; data and data_end are plain u32
    // fields the verifier rewrites into packet pointers.
    let (start, end) = unsafe {
        let skb = ctx.skb.skb;
        (
            core::ptr::read_volatile(&raw const (*skb).data) as usize,
            core::ptr::read_volatile(&raw const (*skb).data_end) as usize,
        )
    };
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Reads one byte by checking two: LLVM turns a one-byte check `p + 1 > end` into
/// `end > p`, which the verifier does not accept as a bound for a variable offset.
/// Every byte read here is followed by more header bytes, so nothing valid is lost.
#[inline(always)]
fn u8_at(ctx: &TcContext, offset: usize) -> Option<u8> {
    // SAFETY: ptr_at checked that both bytes lie inside the packet.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| unsafe { (*p)[0] })
}

#[inline(always)]
fn be16_at(ctx: &TcContext, offset: usize) -> Option<u16> {
    // SAFETY: ptr_at checked the two bytes; unaligned read.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn bytes4_at(ctx: &TcContext, offset: usize) -> Option<[u8; 4]> {
    // SAFETY: ptr_at checked the four bytes.
    ptr_at::<[u8; 4]>(ctx, offset).map(|p| unsafe { *p })
}

#[inline(always)]
fn bytes16_at(ctx: &TcContext, offset: usize) -> Option<[u8; 16]> {
    // SAFETY: ptr_at checked the sixteen bytes.
    ptr_at::<[u8; 16]>(ctx, offset).map(|p| unsafe { *p })
}

/// Sixteen bytes the kernel copies (`bpf_skb_load_bytes`) rather than loads from
/// packet memory: LLVM reads an unaligned `[u8; 16]` byte by byte and spills each,
/// more stack than the quoted-flow subprogram has beside the classifier's frame.
#[inline(always)]
fn copy16_at(ctx: &TcContext, offset: usize) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    // SAFETY: the helper writes at most the 16 bytes of `out`, and checks `offset`
    // against the packet itself.
    let copied = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            offset as u32,
            out.as_mut_ptr() as *mut c_void,
            16,
        )
    };
    (copied == 0).then_some(out)
}

#[inline(always)]
fn v4_addr(b: [u8; 4]) -> [u8; 16] {
    // Two 8-byte values rather than a zeroed array (LLVM zeroes that with a call to
    // the byte-loop BPF `memset` on every IPv4 packet).
    let words = [u64::from(u32::from_ne_bytes(b)), 0];
    // SAFETY: any 16 bytes are a valid [u8; 16]; on little-endian BPF the address's
    // bytes come first.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(words) }
}

/// Parses an IP packet; `None` for non-IP frames and for IP headers cut short.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Option<Packet> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = be16_at(ctx, 12)?;
    if ethertype == ETH_P_8021Q {
        ethertype = be16_at(ctx, 16)?;
        l3 = ETH_HLEN + 4;
    }
    let mut pkt = Packet {
        src: [0; 16],
        dst: [0; 16],
        src_port: 0,
        dst_port: 0,
        frag_id: 0,
        family: 0,
        protocol: 0,
        tcp_flags: 0,
        icmp_type: 0,
        frag: FRAG_NONE,
        icmp_error: false,
        l4_offset: 0,
    };
    let l4 = match ethertype {
        ETH_P_IP => parse_ipv4(ctx, l3, &mut pkt)?,
        ETH_P_IPV6 => parse_ipv6(ctx, l3, &mut pkt)?,
        _ => return None,
    };
    pkt.l4_offset = l4;
    if pkt.frag != FRAG_LATER {
        parse_l4(ctx, l4, &mut pkt);
    }
    Some(pkt)
}

/// The fixed 20-byte IPv4 header is read with one bounds check.
#[inline(always)]
fn parse_ipv4(ctx: &TcContext, l3: usize, pkt: &mut Packet) -> Option<usize> {
    // SAFETY: ptr_at checked the 20 bytes.
    let h: [u8; 20] = unsafe { *ptr_at::<[u8; 20]>(ctx, l3)? };
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return None;
    }
    pkt.family = FAMILY_IPV4;
    pkt.protocol = h[9];
    pkt.src = v4_addr([h[12], h[13], h[14], h[15]]);
    pkt.dst = v4_addr([h[16], h[17], h[18], h[19]]);
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let more_fragments = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    if offset != 0 {
        pkt.frag = FRAG_LATER;
    } else if more_fragments {
        pkt.frag = FRAG_FIRST;
    }
    if pkt.frag != FRAG_NONE {
        pkt.frag_id = u16::from_be_bytes([h[4], h[5]]) as u32;
    }
    Some(l3 + ihl)
}

#[inline(always)]
fn parse_ipv6(ctx: &TcContext, l3: usize, pkt: &mut Packet) -> Option<usize> {
    pkt.family = FAMILY_IPV6;
    let mut next = u8_at(ctx, l3 + 6)?;
    pkt.src = bytes16_at(ctx, l3 + 8)?;
    pkt.dst = bytes16_at(ctx, l3 + 24)?;
    let mut off = l3 + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            // hop-by-hop, routing, destination options
            0 | 43 | 60 => {
                let len = (u8_at(ctx, off + 1)? as usize + 1) * 8;
                next = u8_at(ctx, off)?;
                off += len;
            }
            // fragment
            44 => {
                let frag = be16_at(ctx, off + 2)?;
                let id = bytes4_at(ctx, off + 4)?;
                pkt.frag_id = u32::from_be_bytes(id);
                let offset = frag >> 3;
                let more_fragments = frag & 1 != 0;
                if offset != 0 {
                    pkt.frag = FRAG_LATER;
                } else if more_fragments {
                    pkt.frag = FRAG_FIRST;
                }
                next = u8_at(ctx, off)?;
                off += 8;
            }
            // authentication header
            51 => {
                let len = (u8_at(ctx, off + 1)? as usize + 2) * 4;
                next = u8_at(ctx, off)?;
                off += len;
            }
            _ => break,
        }
    }
    pkt.protocol = next;
    Some(off)
}

#[inline(always)]
fn parse_l4(ctx: &TcContext, l4: usize, pkt: &mut Packet) {
    match pkt.protocol {
        PROTO_TCP => {
            // Ports and flags with one bounds check.
            if let Some(h) = ptr_at::<[u8; 14]>(ctx, l4) {
                // SAFETY: ptr_at checked the 14 bytes.
                let h = unsafe { *h };
                pkt.src_port = u16::from_be_bytes([h[0], h[1]]);
                pkt.dst_port = u16::from_be_bytes([h[2], h[3]]);
                pkt.tcp_flags = h[13];
            }
        }
        PROTO_UDP | PROTO_SCTP => {
            if let Some(h) = ptr_at::<[u8; 4]>(ctx, l4) {
                // SAFETY: ptr_at checked the 4 bytes.
                let h = unsafe { *h };
                pkt.src_port = u16::from_be_bytes([h[0], h[1]]);
                pkt.dst_port = u16::from_be_bytes([h[2], h[3]]);
            }
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            pkt.icmp_type = u8_at(ctx, l4).unwrap_or(0);
            if is_icmp_echo(pkt.family, pkt.icmp_type) {
                let id = be16_at(ctx, l4 + 4).unwrap_or(0);
                pkt.src_port = id;
                pkt.dst_port = id;
            } else if is_icmp_error(pkt.family, pkt.icmp_type) {
                pkt.icmp_error = true;
            }
        }
        _ => {}
    }
}

/// The flow quoted by an ICMP error whose L4 header starts at `l4`.
#[inline(always)]
pub fn parse_quoted(ctx: &TcContext, family: u8, l4: usize) -> Option<Quoted> {
    let inner = l4 + 8;
    let (protocol, src, dst, inner_l4) = if family == FAMILY_IPV4 {
        let ihl = ((u8_at(ctx, inner)? & 0x0f) as usize) * 4;
        if ihl < 20 {
            return None;
        }
        (
            u8_at(ctx, inner + 9)?,
            v4_addr(bytes4_at(ctx, inner + 12)?),
            v4_addr(bytes4_at(ctx, inner + 16)?),
            inner + ihl,
        )
    } else {
        (
            u8_at(ctx, inner + 6)?,
            copy16_at(ctx, inner + 8)?,
            copy16_at(ctx, inner + 24)?,
            inner + IPV6_HLEN,
        )
    };
    let (src_port, dst_port) = match protocol {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            (be16_at(ctx, inner_l4)?, be16_at(ctx, inner_l4 + 2)?)
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let id = be16_at(ctx, inner_l4 + 4)?;
            (id, id)
        }
        _ => (0, 0),
    };
    Some(Quoted {
        src,
        dst,
        src_port,
        dst_port,
        protocol,
    })
}
