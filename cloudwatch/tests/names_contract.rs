//! The rotated-file naming contract has one owner, `exporter::sink::names`: every name
//! the agent's file sink produces (live, rotated, gzipped by its housekeeping) is listed
//! by the shipper in the writer's order, and every line comes back in order.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudwatch::files::{self, FileName};
use cloudwatch::reader::{LineReader, Poll};
use common::*;
use exporter::SharedStats;
use exporter::sink::{FileSink, FileSinkConfig};

#[test]
fn every_name_the_writer_produces_is_read_back_in_order_by_the_shipper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    let config = FileSinkConfig {
        max_file_bytes: 4096,
        max_backups: 1000,
        min_file_age: Duration::ZERO,
        compress: true,
        compress_grace: Duration::ZERO,
        ..FileSinkConfig::default()
    };
    let mut sink =
        FileSink::open(&live, config, Arc::new(SharedStats::default())).expect("open sink");
    let base = now_ms() - 60_000;
    let mut rotations = 0;
    for id in 0..400 {
        let mut group = line(id, base);
        group.push('\n');
        sink.write_group(group.as_bytes());
        if sink.maybe_rotate(Instant::now()).expect("rotate") {
            rotations += 1;
        }
    }
    assert!(rotations >= 10, "{rotations} rotations");
    // Let housekeeping gzip some of them, then stop it.
    let end = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_dir(dir.path()).expect("ls").any(|e| {
        e.expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".gz")
    }) {
        assert!(Instant::now() < end, "no file was gzipped");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(sink);

    let on_disk: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.ends_with(".tmp"))
        .collect();
    for name in &on_disk {
        assert!(
            files::parse_name(LIVE, name).is_some(),
            "{name}: written but not a name of the set"
        );
    }
    let listed = files::list(dir.path(), LIVE).expect("list");
    let writer_order = exporter::list_shipping_order(&live).expect("writer's order");
    assert_eq!(
        listed.iter().map(|e| &e.path).collect::<Vec<_>>(),
        writer_order.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
    assert_eq!(listed.len(), on_disk.len(), "{on_disk:?}");
    assert!(matches!(
        files::parse_name(LIVE, &listed[0].path.file_name().unwrap().to_string_lossy()),
        Some(FileName::Rotated(1) | FileName::Compressed(1))
    ));

    let mut reader = LineReader::open(dir.path(), LIVE, None).expect("open");
    let mut buf = Vec::new();
    let mut ids = Vec::new();
    while let Poll::Line(_) = reader.next_line(&mut buf).expect("read") {
        ids.push(id_of(std::str::from_utf8(&buf).expect("utf8")));
    }
    assert_eq!(ids, (0..400).collect::<Vec<_>>());
    assert_eq!(reader.take_lost_files(), 0);
}
