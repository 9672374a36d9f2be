//! A full disk (a small tmpfs mounted by the test): no partial line at rest, an
//! exact count of lost lines, and recovery once space is freed. Needs root (as CI).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{line_id, numbered_event, whole_lines};
use exporter::{EnrichmentSnapshot, FileSinkConfig, Pipeline, PipelineConfig, snapshot_handle};

/// A tmpfs mounted on a temp dir; unmounted (lazily) and removed on drop.
struct TmpfsMount {
    dir: tempfile::TempDir,
}

impl TmpfsMount {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (tests run as root in CI)"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Lazy unmount never fails because a file is still open, and never panics.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn file_ids(path: &PathBuf) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    whole_lines(&bytes).iter().map(|l| line_id(l)).collect()
}

/// Operational-log lines captured from tracing.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn a_full_disk_loses_whole_counted_groups_and_recovers_when_space_returns() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mount = TmpfsMount::new("256k");
    let filler = mount.path().join("filler");
    std::fs::write(&filler, vec![b'x'; 96 * 1024]).unwrap();
    let live = mount.path().join("network-policy-agent.log");
    let config = PipelineConfig {
        sink: FileSinkConfig {
            write_group_bytes: 1024,
            compress: false,
            ..Default::default()
        },
        loss_warning_interval: Duration::ZERO,
        ..Default::default()
    };
    let mut p = Pipeline::new(
        config,
        snapshot_handle(EnrichmentSnapshot::default()),
        &live,
    )
    .unwrap();

    // Fill the disk, then keep going for 200 more events.
    let mut id = 0u64;
    let mut after_full = 0;
    while after_full < 200 {
        assert!(id < 100_000, "the disk never filled");
        p.on_event(&numbered_event(id));
        id += 1;
        if p.counters().lines_lost_no_space > 0 {
            after_full += 1;
        }
    }
    p.flush();
    p.flush_due(Instant::now());
    let full = p.counters();
    assert_eq!(full.events_received, id);
    assert_eq!(
        full.lines_written + full.lines_lost_no_space,
        id,
        "every line written or counted lost"
    );
    assert!(full.lines_lost_no_space >= 200);
    assert_eq!(full.lines_lost_write_error, 0);

    // At rest: whole lines only, exactly the written ones, in order.
    let ids = file_ids(&live);
    assert_eq!(ids.len() as u64, full.lines_written);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(std::fs::metadata(&live).unwrap().len(), full.bytes_written);

    // Space returns: the next lines are written, nothing more lost.
    std::fs::remove_file(&filler).unwrap();
    let resumed_from = id;
    for _ in 0..100 {
        p.on_event(&numbered_event(id));
        id += 1;
    }
    p.flush();
    let after = p.counters();
    assert_eq!(after.lines_lost_no_space, full.lines_lost_no_space);
    assert_eq!(after.lines_written, full.lines_written + 100);
    let ids = file_ids(&live);
    assert_eq!(ids.len() as u64, after.lines_written);
    assert!(ids[ids.len() - 100..].iter().copied().eq(resumed_from..id));
    drop(p);

    // The operational log told the story; none of it went into the flow file.
    let text = logs.text();
    assert!(text.contains("flow-log disk full"), "{text}");
    assert!(
        text.contains(&format!(
            "total_lost_disk_full={}",
            full.lines_lost_no_space
        )),
        "{text}"
    );
    assert!(text.contains("flow-log writes resumed"), "{text}");
    let flow = std::fs::read_to_string(&live).unwrap();
    assert!(!flow.contains("disk full") && !flow.contains("resumed"));
}
