//! Byte-level writers the line formats share: decimal integers, IP addresses and
//! JSON string bodies appended to a reusable buffer, with no allocation or
//! `format!` per call.

use std::io::Write as _;
use std::net::Ipv6Addr;

use datapath_common::abi::FAMILY_IPV4;

/// Two-digit table: `DIGITS[2n..2n+2]` is `n` for 0..=99.
const DIGITS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `value` in decimal.
///
/// The digits are written straight into the buffer: 20 bytes are appended (a store of
/// fixed size, no `memcpy` call), the digits written over their front and the rest
/// cut off again. Building them on the stack first and copying stalled the copy on
/// the digit stores (store forwarding).
#[inline]
pub fn push_u64(buf: &mut Vec<u8>, mut value: u64) {
    let len = value
        .checked_ilog10()
        .map_or(1, |digits| digits as usize + 1);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 20]);
    let out: &mut [u8; 20] = (&mut buf[start..start + 20])
        .try_into()
        .expect("20 bytes were just appended");
    let mut i = len;
    while value >= 100 {
        let pair = (value % 100) as usize * 2;
        value /= 100;
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGITS[pair..pair + 2]);
    }
    if value >= 10 {
        let pair = value as usize * 2;
        out[..2].copy_from_slice(&DIGITS[pair..pair + 2]);
    } else {
        out[0] = b'0' + value as u8;
    }
    buf.truncate(start + len);
}

/// Appends the address held in an event field: dotted quad for IPv4 (every octet,
/// zeros included), RFC 5952 text for IPv6.
#[inline]
pub fn push_ip(buf: &mut Vec<u8>, family: u8, bytes: &[u8; 16]) {
    if family == FAMILY_IPV4 {
        // Four octets of up to three digits and three dots, written straight into the
        // buffer as in `push_u64`: 16 bytes appended, the text over their front, the
        // rest cut off.
        let start = buf.len();
        buf.extend_from_slice(&[0u8; 16]);
        let tmp: &mut [u8; 16] = (&mut buf[start..start + 16])
            .try_into()
            .expect("16 bytes were just appended");
        let mut n = 0;
        for (i, &octet) in bytes[..4].iter().enumerate() {
            if i > 0 {
                tmp[n] = b'.';
                n += 1;
            }
            if octet >= 100 {
                tmp[n] = b'0' + octet / 100;
                n += 1;
            }
            if octet >= 10 {
                tmp[n] = b'0' + octet / 10 % 10;
                n += 1;
            }
            tmp[n] = b'0' + octet % 10;
            n += 1;
        }
        buf.truncate(start + n);
    } else {
        // Longest IPv6 text is 45 bytes (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
        let mut tmp = [0u8; 48];
        let mut cursor = &mut tmp[..];
        let room = cursor.len();
        // A 48-byte buffer always holds the text, so the write cannot fail; on the
        // impossible failure the address is simply cut short.
        let _ = write!(cursor, "{}", Ipv6Addr::from(*bytes));
        let used = room - cursor.len();
        buf.extend_from_slice(&tmp[..used]);
    }
}

/// Appends `text` as the body of a JSON string (no quotes), escaping `"`, `\` and
/// control characters.
#[inline]
pub fn push_json_str(buf: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !needs_escape(bytes) {
        buf.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            _ => buf.push(b),
        }
    }
}

/// Whether any byte is a control character, `"` or `\\`; eight bytes at a time.
#[inline]
pub fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact for "some byte is below n" (n <= 128) and "some byte is zero".
    let has_less = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH != 0;
    let has_byte = |v: u64, b: u64| has_less(v ^ (ONES * b), 1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        if has_less(v, 0x20) || has_byte(v, u64::from(b'"')) || has_byte(v, u64::from(b'\\')) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath_common::abi::FAMILY_IPV6;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn integers_match_std_formatting() {
        for v in [
            0,
            7,
            9,
            10,
            99,
            100,
            101,
            65_535,
            1_000_000,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(text(|b| push_u64(b, v)), v.to_string());
        }
        // Every length, each power of ten and its neighbours, appended after text.
        let mut p = 1u64;
        loop {
            for v in [p - 1, p, p + 1, p.saturating_mul(10) - 1] {
                let mut buf = b"x".to_vec();
                push_u64(&mut buf, v);
                assert_eq!(buf, format!("x{v}").into_bytes());
            }
            match p.checked_mul(10) {
                Some(next) => p = next,
                None => break,
            }
        }
    }

    #[test]
    fn ipv4_matches_std_formatting_for_every_octet_value() {
        for v in 0..=255u8 {
            let octets = [v, 255 - v, v / 3, v.wrapping_mul(7)];
            let mut field = [0xaa; 16];
            field[..4].copy_from_slice(&octets);
            assert_eq!(
                text(|b| push_ip(b, FAMILY_IPV4, &field)),
                std::net::Ipv4Addr::from(octets).to_string()
            );
        }
    }

    #[test]
    fn ipv4_keeps_zero_octets() {
        let rows: [([u8; 4], &str); 4] = [
            ([64, 6, 160, 0], "64.6.160.0"),
            ([0, 0, 0, 0], "0.0.0.0"),
            ([10, 0, 0, 10], "10.0.0.10"),
            ([255, 255, 255, 255], "255.255.255.255"),
        ];
        for (octets, want) in rows {
            let mut field = [0xaa; 16];
            field[..4].copy_from_slice(&octets);
            assert_eq!(text(|b| push_ip(b, FAMILY_IPV4, &field)), want);
        }
    }

    #[test]
    fn ipv6_uses_compressed_text() {
        for want in [
            "fd00::1",
            "::",
            "2001:db8:0:1::64:6",
            "::ffff:64.6.160.0",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let field = want.parse::<Ipv6Addr>().unwrap().octets();
            assert_eq!(text(|b| push_ip(b, FAMILY_IPV6, &field)), want);
        }
    }

    #[test]
    fn escape_detection_is_exact_at_every_position() {
        for len in 0..20 {
            for pos in 0..len {
                for special in [0u8, 0x1f, b'"', b'\\'] {
                    let mut v = vec![b'a'; len];
                    v[pos] = special;
                    assert!(needs_escape(&v), "len {len} pos {pos} byte {special}");
                }
                for plain in [0x20u8, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff] {
                    let mut v = vec![b'z'; len];
                    v[pos] = plain;
                    assert!(!needs_escape(&v), "len {len} pos {pos} byte {plain}");
                }
            }
        }
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(text(|b| push_json_str(b, "plain-name")), "plain-name");
        assert_eq!(
            text(|b| push_json_str(b, "a\"b\\c\nd\u{1}")),
            "a\\\"b\\\\c\\nd\\u0001"
        );
    }
}
