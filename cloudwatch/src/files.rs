//! The flow-log files on disk: which names belong to the set (live, rotated, compressed),
//! in what order they are read, how each is opened, and how a file is recognised (inode
//! plus a hash of its first line).
//!
//! The file sink's naming is mirrored in [`parse_name`], the one place to swap for a
//! shared parser.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a directory entry is to the shipper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileName {
    /// The live file, `<live>`.
    Live,
    /// A rotated file, `<live>.<seq>` (eight or more digits).
    Rotated(u64),
    /// A compressed rotated file, `<live>.<seq>.gz`.
    Compressed(u64),
}

/// Parses a file name against the live name; `None` for anything else in the directory.
pub fn parse_name(live: &str, name: &str) -> Option<FileName> {
    if name == live {
        return Some(FileName::Live);
    }
    let rest = name.strip_prefix(live)?.strip_prefix('.')?;
    let (digits, compressed) = match rest.strip_suffix(".gz") {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq = digits.parse().ok()?;
    Some(if compressed {
        FileName::Compressed(seq)
    } else {
        FileName::Rotated(seq)
    })
}

/// One file of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The rotation counter; `None` for the live file.
    pub seq: Option<u64>,
    /// Its path.
    pub path: PathBuf,
    /// True for a `.gz` file.
    pub compressed: bool,
}

/// Lists the set in reading order: rotated ascending by sequence, then the live file.
/// When both `<seq>` and `<seq>.gz` exist (compression under way) the plain file wins.
pub fn list(dir: &Path, live: &str) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut live_entry = None;
    for dent in std::fs::read_dir(dir)? {
        let dent = dent?;
        let name = dent.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_name(live, name) {
            Some(FileName::Live) => {
                live_entry = Some(Entry {
                    seq: None,
                    path: dent.path(),
                    compressed: false,
                })
            }
            Some(FileName::Rotated(seq)) => entries.push(Entry {
                seq: Some(seq),
                path: dent.path(),
                compressed: false,
            }),
            Some(FileName::Compressed(seq)) => entries.push(Entry {
                seq: Some(seq),
                path: dent.path(),
                compressed: true,
            }),
            None => {}
        }
    }
    entries.sort_by_key(|e| (e.seq, e.compressed));
    entries.dedup_by_key(|e| e.seq);
    entries.extend(live_entry);
    Ok(entries)
}

/// FNV-1a, 64 bits: a stable hash (unlike std's) for recognising a file by its first line.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Opens a file of the set for reading its uncompressed content; returns the reader
/// and the inode of the file opened.
pub fn open(path: &Path, compressed: bool) -> std::io::Result<(Box<dyn Read + Send>, u64)> {
    let file = File::open(path)?;
    let inode = file.metadata()?.ino();
    let reader: Box<dyn Read + Send> = if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok((reader, inode))
}

/// The longest first line we read to recognise a file.
const MAX_FIRST_LINE: u64 = 1 << 20;

/// The hash of a file's first complete line (without its newline), or `None` when the
/// file has no complete line yet.
pub fn first_line_hash(path: &Path, compressed: bool) -> std::io::Result<Option<u64>> {
    let (reader, _) = open(path, compressed)?;
    let mut r = BufReader::new(reader.take(MAX_FIRST_LINE));
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Ok(None);
    }
    line.pop();
    Ok(Some(fnv1a(&line)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIVE: &str = "network-policy-agent.log";

    #[test]
    fn names_are_parsed_against_the_live_name() {
        let rows = [
            ("network-policy-agent.log", Some(FileName::Live)),
            (
                "network-policy-agent.log.00000007",
                Some(FileName::Rotated(7)),
            ),
            (
                "network-policy-agent.log.00000007.gz",
                Some(FileName::Compressed(7)),
            ),
            (
                "network-policy-agent.log.123456789",
                Some(FileName::Rotated(123_456_789)),
            ),
            ("network-policy-agent.log.0000007", None),
            ("network-policy-agent.log.0000000a", None),
            ("network-policy-agent.log.00000007.gz.tmp", None),
            (".network-policy-agent.log.cloudwatch-checkpoint", None),
            ("other.log.00000001", None),
            ("network-policy-agent.logx", None),
        ];
        for (name, want) in rows {
            assert_eq!(parse_name(LIVE, name), want, "{name}");
        }
    }

    #[test]
    fn listing_orders_rotated_by_sequence_then_live_and_prefers_plain_over_gz() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "network-policy-agent.log",
            "network-policy-agent.log.00000010",
            "network-policy-agent.log.00000002.gz",
            "network-policy-agent.log.00000003",
            "network-policy-agent.log.00000003.gz",
            "unrelated",
        ] {
            File::create(dir.path().join(name)).expect("create");
        }
        let got: Vec<_> = list(dir.path(), LIVE)
            .expect("list")
            .into_iter()
            .map(|e| (e.seq, e.compressed))
            .collect();
        assert_eq!(
            got,
            [
                (Some(2), true),
                (Some(3), false),
                (Some(10), false),
                (None, false)
            ]
        );
    }

    #[test]
    fn first_line_hash_is_equal_for_a_file_and_its_gz() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("a");
        let gz = dir.path().join("a.gz");
        std::fs::write(&plain, b"first line\nsecond\n").expect("write");
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&gz).expect("create"),
            flate2::Compression::fast(),
        );
        enc.write_all(b"first line\nsecond\n").expect("gz");
        enc.finish().expect("finish");
        let a = first_line_hash(&plain, false).expect("hash");
        assert_eq!(a, Some(fnv1a(b"first line")));
        assert_eq!(first_line_hash(&gz, true).expect("hash"), a);
    }

    #[test]
    fn a_file_without_a_complete_line_has_no_hash_yet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a");
        std::fs::write(&p, b"partial").expect("write");
        assert_eq!(first_line_hash(&p, false).expect("hash"), None);
    }
}
