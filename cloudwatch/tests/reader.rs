//! The line reader on real files: order across rotated, compressed and live files,
//! following the live file across rotation, partial lines, resuming from a checkpoint
//! after rotation and compression, and files lost before they were read.

mod common;

use cloudwatch::checkpoint::Checkpoint;
use cloudwatch::reader::{LineReader, Poll};
use common::*;

fn drain(reader: &mut LineReader) -> (Vec<usize>, Option<Checkpoint>) {
    let mut ids = Vec::new();
    let mut last = None;
    let mut buf = Vec::new();
    for _ in 0..1_000_000 {
        match reader.next_line(&mut buf).expect("read") {
            Poll::Line(pos) => {
                ids.push(id_of(std::str::from_utf8(&buf).expect("utf8")));
                last = Some(pos);
            }
            Poll::Idle => break,
        }
    }
    (ids, last)
}

#[test]
fn reads_rotated_files_by_sequence_then_the_live_file_including_gz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..10, 0);
    compress(&rotate(dir.path(), 7));
    append(&live, 10..20, 0);
    rotate(dir.path(), 8);
    append(&live, 20..30, 0);
    rotate(dir.path(), 10);
    append(&live, 30..35, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    let (ids, _) = drain(&mut r);
    assert_eq!(ids, (0..35).collect::<Vec<_>>());
    assert_eq!(r.take_lost_files(), 1, "sequence 9 is missing");
}

#[test]
fn follows_the_live_file_across_rotation_without_loss_or_repeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..5, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    assert_eq!(drain(&mut r).0, (0..5).collect::<Vec<_>>());
    append(&live, 5..8, 0);
    rotate(dir.path(), 1); // lines 5..8 written before the rotation, unread yet
    append(&live, 8..12, 0);
    assert_eq!(drain(&mut r).0, (5..12).collect::<Vec<_>>());
    compress(&dir.path().join(format!("{LIVE}.00000001")));
    rotate(dir.path(), 2);
    append(&live, 12..13, 0);
    assert_eq!(drain(&mut r).0, vec![12]);
    assert_eq!(r.take_lost_files(), 0);
}

#[test]
fn a_partial_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    let full = line(0, 0);
    let (head, tail) = full.split_at(20);
    std::fs::write(&live, head).expect("write head");
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    assert_eq!(drain(&mut r).0, Vec::<usize>::new());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&live)
        .expect("open");
    std::io::Write::write_all(&mut f, format!("{tail}\n").as_bytes()).expect("tail");
    let (ids, pos) = drain(&mut r);
    assert_eq!(ids, vec![0]);
    assert_eq!(pos.expect("position").offset, full.len() as u64 + 1);
}

#[test]
fn resumes_from_a_checkpoint_after_its_file_was_rotated_and_compressed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..10, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    let mut buf = Vec::new();
    let mut pos = None;
    for _ in 0..4 {
        if let Poll::Line(p) = r.next_line(&mut buf).expect("read") {
            pos = Some(p);
        }
    }
    let cp = pos.expect("four lines read");
    drop(r);
    append(&live, 10..15, 0);
    compress(&rotate(dir.path(), 3));
    append(&live, 15..20, 0);
    let mut r = LineReader::open(dir.path(), LIVE, Some(cp)).expect("reopen");
    assert_eq!(drain(&mut r).0, (4..20).collect::<Vec<_>>());
    assert_eq!(r.take_lost_files(), 0);
}

#[test]
fn a_checkpoint_whose_file_is_gone_counts_a_loss_and_starts_from_the_oldest_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..3, 0);
    let gone = Checkpoint {
        inode: 1,
        first_line_hash: 12345,
        offset: 10,
    };
    let mut r = LineReader::open(dir.path(), LIVE, Some(gone)).expect("open");
    assert_eq!(r.take_lost_files(), 1);
    assert_eq!(drain(&mut r).0, vec![0, 1, 2]);
}

#[test]
fn a_new_live_file_reusing_the_inode_is_not_mistaken_for_the_checkpointed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..3, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    let (_, pos) = drain(&mut r);
    let cp = pos.expect("read");
    // Same inode, different first line: as if the file was deleted and the inode reused.
    std::fs::write(&live, "").expect("truncate");
    append(&live, 100..102, 0);
    let mut r = LineReader::open(dir.path(), LIVE, Some(cp)).expect("reopen");
    assert_eq!(r.take_lost_files(), 1);
    assert_eq!(drain(&mut r).0, vec![100, 101]);
}
