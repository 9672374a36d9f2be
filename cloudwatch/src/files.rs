//! The flow-log files on disk: which names belong to the set (live, rotated, compressed),
//! in what order they are read, how each is opened, and how a file is recognised: a
//! [`FileKey`] of device, inode and a fingerprint of its first line (FNV-1a of the
//! uncompressed bytes, so a file keeps its identity when it is gzipped).
//!
//! The naming contract itself is the file sink's, [`exporter::sink::names`]: this
//! module only adapts it, so the writer and the shipper can never disagree.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use exporter::sink::names;
use serde::{Deserialize, Serialize};

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
    let r = names::parse_rotated_name(live, name)?;
    Some(if r.compressed {
        FileName::Compressed(r.seq)
    } else {
        FileName::Rotated(r.seq)
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

/// Lists the set in reading order ([`names::list_shipping_order`]): rotated ascending by
/// sequence, then the live file. When both `<seq>` and `<seq>.gz` exist (compression
/// under way) the plain file wins.
pub fn list(dir: &Path, live: &str) -> std::io::Result<Vec<Entry>> {
    Ok(names::list_shipping_order(&dir.join(live))?
        .into_iter()
        .map(|f| Entry {
            seq: f.rotated.map(|r| r.seq),
            compressed: f.rotated.is_some_and(|r| r.compressed),
            path: f.path,
        })
        .collect())
}

/// Who a file is: device and inode of a plain file, and the fingerprint of its first
/// line. A compressed file is recognised by the fingerprint alone (gzip makes a new
/// inode); `dev` 0 means unknown (a checkpoint written before devices were recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub inode: u64,
    /// FNV-1a of the first line, without its newline.
    pub fingerprint: u64,
}

impl FileKey {
    /// True when a file with this device, inode and fingerprint (`compressed`: the
    /// fingerprint alone) is the file this key names.
    pub fn names(&self, dev: u64, inode: u64, fingerprint: u64, compressed: bool) -> bool {
        fingerprint == self.fingerprint
            && (compressed || (inode == self.inode && (self.dev == 0 || dev == self.dev)))
    }
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
/// and the inode and device of the file opened.
pub fn open(path: &Path, compressed: bool) -> std::io::Result<(Box<dyn Read + Send>, u64, u64)> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let (inode, dev) = (meta.ino(), meta.dev());
    let reader: Box<dyn Read + Send> = if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok((reader, inode, dev))
}

/// The longest first line we read to recognise a file.
const MAX_FIRST_LINE: u64 = 1 << 20;

/// The hash of a file's first complete line (without its newline), or `None` when the
/// file has no complete line yet.
pub fn first_line_hash(path: &Path, compressed: bool) -> std::io::Result<Option<u64>> {
    let (reader, _, _) = open(path, compressed)?;
    let mut r = BufReader::new(reader.take(MAX_FIRST_LINE));
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Ok(None);
    }
    line.pop();
    Ok(Some(fnv1a(&line)))
}

/// The fingerprint of an open plain file's first complete line, read with positioned
/// reads (the file's own position is untouched); `None` without a complete line.
pub fn first_line_hash_at(file: &File) -> std::io::Result<Option<u64>> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut at = 0u64;
    while at < MAX_FIRST_LINE {
        let n = file.read_at(&mut chunk, at)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&chunk[..i]);
            return Ok(Some(fnv1a(&line)));
        }
        line.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    Ok(None)
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
