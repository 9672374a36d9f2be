//! Helpers shared by the integration tests: numbered events, reading every file in
//! shipping order, and a tail reader that follows the live file by inode.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use datapath_common::abi::{
    DIRECTION_EGRESS, FAMILY_IPV4, FlowEvent, PROTO_TCP, REASON_NO_RULE_MATCHED, VERDICT_ACCEPT,
    VERDICT_DENY,
};
use exporter::list_shipping_order;

/// Event number `id`: its id is carried in `Bytes`; odd ids are DENY with `Count` 2.
pub fn numbered_event(id: u64) -> FlowEvent {
    let deny = id % 2 == 1;
    FlowEvent {
        timestamp_ns: 1_000_000_000 + id,
        bytes: id,
        count: if deny { 2 } else { 1 },
        family: FAMILY_IPV4,
        protocol: PROTO_TCP,
        direction: DIRECTION_EGRESS,
        verdict: if deny { VERDICT_DENY } else { VERDICT_ACCEPT },
        reason: REASON_NO_RULE_MATCHED,
        src_addr: {
            let mut a = [0; 16];
            a[..4].copy_from_slice(&[10, 0, (id >> 8) as u8, id as u8]);
            a
        },
        dst_addr: {
            let mut a = [0; 16];
            a[..4].copy_from_slice(&[64, 6, 160, 0]);
            a
        },
        src_port: 40000,
        dst_port: 443,
        ..Default::default()
    }
}

/// The id a line carries (its `Bytes` value); panics on a line that is not one of ours.
pub fn line_id(line: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
    v["Bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no Bytes in {line:?}"))
}

/// Every byte of every file of `live` in shipping order, gz files decompressed.
pub fn read_all_files(live: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for f in list_shipping_order(live).unwrap() {
        let raw = std::fs::read(&f.path).unwrap();
        if f.rotated.is_some_and(|r| r.compressed) {
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
        } else {
            out.extend_from_slice(&raw);
        }
    }
    out
}

/// Splits whole lines; asserts the text ends at a line end.
pub fn whole_lines(bytes: &[u8]) -> Vec<String> {
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "data ends with a partial line"
    );
    let text = std::str::from_utf8(bytes).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// A tail reader like Fluent Bit's: follows `path` by inode, keeps a partial last
/// line until its newline arrives, drains the old file after a rotation.
pub fn follow(
    path: PathBuf,
    stop: Arc<AtomicBool>,
    expected: usize,
    deadline: Duration,
) -> Vec<String> {
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut file = File::open(&path).expect("the live file exists from start-up");
    let mut inode = file.metadata().unwrap().ino();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut drain = |file: &mut File, partial: &mut Vec<u8>, lines: &mut Vec<String>| {
        let mut got = false;
        loop {
            let n = file.read(&mut chunk).unwrap();
            if n == 0 {
                return got;
            }
            got = true;
            partial.extend_from_slice(&chunk[..n]);
            while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=pos).collect();
                lines.push(String::from_utf8(line[..line.len() - 1].to_vec()).unwrap());
            }
        }
    };
    while started.elapsed() < deadline {
        if drain(&mut file, &mut partial, &mut lines) {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.ino() != inode => {
                // Rotated: everything the writer put in the old file is there now.
                drain(&mut file, &mut partial, &mut lines);
                assert!(partial.is_empty(), "rotated file ended with a partial line");
                file = File::open(&path).unwrap();
                file.seek(SeekFrom::Start(0)).unwrap();
                inode = file.metadata().unwrap().ino();
                continue;
            }
            _ => {}
        }
        if stop.load(Ordering::Acquire) && lines.len() >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    lines
}
