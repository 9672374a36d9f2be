//! The rotated-file naming contract, owned here and used by both the writer (this sink)
//! and the CloudWatch shipper (`cloudwatch::files` adapts it, never copies it):
//! `<live name>.<seq>` and, once compressed, `<live name>.<seq>.gz`, where `<seq>` is
//! a zero-padded 8-digit counter that only grows (next = highest found + 1). These
//! names never match the Fluent Bit glob `network-policy-agent*.log`.

use std::io;
use std::path::{Path, PathBuf};

/// Digits of the zero-padded sequence number.
pub const SEQ_DIGITS: usize = 8;
/// Suffix of a compressed rotated file.
pub const GZ_SUFFIX: &str = ".gz";

/// A parsed rotated-file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RotatedName {
    pub seq: u64,
    pub compressed: bool,
}

/// The name of rotated file `seq` of live file `live_name`.
pub fn rotated_file_name(live_name: &str, seq: u64, compressed: bool) -> String {
    let gz = if compressed { GZ_SUFFIX } else { "" };
    format!("{live_name}.{seq:0width$}{gz}", width = SEQ_DIGITS)
}

/// Parses `candidate` as a rotated file of `live_name`; `None` for anything else
/// (the live file, temporary files, other files).
pub fn parse_rotated_name(live_name: &str, candidate: &str) -> Option<RotatedName> {
    let rest = candidate.strip_prefix(live_name)?.strip_prefix('.')?;
    let (digits, compressed) = match rest.strip_suffix(GZ_SUFFIX) {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if digits.len() < SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq = digits.parse().ok()?;
    Some(RotatedName { seq, compressed })
}

/// One file to ship, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippingFile {
    pub path: PathBuf,
    /// `None` for the live file.
    pub rotated: Option<RotatedName>,
}

/// The files of `live_path` in shipping order: rotated files by ascending sequence
/// (when both `.<seq>` and `.<seq>.gz` exist during compression, only the
/// uncompressed one), then the live file if it exists.
///
/// # Errors
/// The directory cannot be read.
pub fn list_shipping_order(live_path: &Path) -> io::Result<Vec<ShippingFile>> {
    let (dir, live_name) = split_live_path(live_path)?;
    let mut rotated: Vec<(RotatedName, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(parsed) = parse_rotated_name(live_name, name) {
            rotated.push((parsed, entry.path()));
        }
    }
    // Uncompressed sorts before compressed for the same seq; keep the first.
    rotated.sort();
    rotated.dedup_by_key(|(name, _)| name.seq);
    let mut out: Vec<ShippingFile> = rotated
        .into_iter()
        .map(|(name, path)| ShippingFile {
            path,
            rotated: Some(name),
        })
        .collect();
    if live_path.exists() {
        out.push(ShippingFile {
            path: live_path.to_path_buf(),
            rotated: None,
        });
    }
    Ok(out)
}

/// The highest rotated sequence present next to `live_path` (0 when none).
///
/// # Errors
/// The directory cannot be read.
pub fn highest_seq(live_path: &Path) -> io::Result<u64> {
    Ok(list_shipping_order(live_path)?
        .iter()
        .filter_map(|f| f.rotated.map(|r| r.seq))
        .max()
        .unwrap_or(0))
}

/// The directory and file name of a live path.
pub(crate) fn split_live_path(live_path: &Path) -> io::Result<(&Path, &str)> {
    let name = live_path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "flow-log path has no UTF-8 file name",
            )
        })?;
    let dir = match live_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "network-policy-agent.log";

    /// The Fluent Bit glob of the EKS guide, `network-policy-agent*.log`.
    fn matches_guide_glob(name: &str) -> bool {
        name.starts_with("network-policy-agent") && name.ends_with(".log")
    }

    #[test]
    fn rotated_names_are_zero_padded_and_round_trip() {
        assert_eq!(
            rotated_file_name(LIVE, 7, false),
            "network-policy-agent.log.00000007"
        );
        assert_eq!(
            rotated_file_name(LIVE, 7, true),
            "network-policy-agent.log.00000007.gz"
        );
        for (seq, gz) in [
            (1, false),
            (42, true),
            (99_999_999, false),
            (123_456_789, true),
        ] {
            let name = rotated_file_name(LIVE, seq, gz);
            assert_eq!(
                parse_rotated_name(LIVE, &name),
                Some(RotatedName {
                    seq,
                    compressed: gz
                })
            );
            assert!(!matches_guide_glob(&name), "{name}");
        }
        assert!(matches_guide_glob(LIVE));
    }

    #[test]
    fn other_names_are_not_rotated_files() {
        for name in [
            LIVE,
            "network-policy-agent.log.1",
            "network-policy-agent.log.0000001a",
            "network-policy-agent.log.00000001.gz.tmp",
            ".network-policy-agent.log.new",
            "network-policy-agent.log.00000001.zip",
            "other.log.00000001",
        ] {
            assert_eq!(parse_rotated_name(LIVE, name), None, "{name}");
        }
    }

    #[test]
    fn shipping_order_is_rotated_by_seq_then_live() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(LIVE);
        for name in [
            "network-policy-agent.log.00000010.gz",
            "network-policy-agent.log.00000002",
            "network-policy-agent.log.00000009",
            "network-policy-agent.log.00000009.gz",
            "network-policy-agent.log.00000009.gz.tmp",
            "unrelated.txt",
            LIVE,
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let names: Vec<String> = list_shipping_order(&live)
            .unwrap()
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "network-policy-agent.log.00000002",
                "network-policy-agent.log.00000009",
                "network-policy-agent.log.00000010.gz",
                LIVE
            ]
        );
        assert_eq!(highest_seq(&live).unwrap(), 10);
    }
}
