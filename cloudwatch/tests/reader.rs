//! The line reader on real files: order across rotated, compressed and live files,
//! following the live file across rotation, partial lines, resuming from a checkpoint
//! after rotation and compression, files lost before they were read, files truncated in
//! place or replaced under the same name (while running and across a restart), and
//! checkpoints written by the previous format.

mod common;

use cloudwatch::checkpoint::{self, Checkpoint};
use cloudwatch::metrics::LossReason;
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
        file: cloudwatch::files::FileKey {
            dev: 0,
            inode: 1,
            fingerprint: 12345,
        },
        offset: 10,
        ..Checkpoint::default()
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
    // Same device and inode, another first line: the file was cut in place (or the inode
    // reused); its new content is read from the start either way.
    assert_eq!(drain(&mut r).0, vec![100, 101]);
    assert_eq!(lost_lines(&mut r, LossReason::Truncated), 0);
}

fn lost_lines(r: &mut LineReader, reason: LossReason) -> u64 {
    r.take_lost_lines()
        .iter()
        .filter(|(why, _)| *why == reason)
        .map(|(_, n)| n)
        .sum()
}

/// `: > file` or logrotate's copytruncate: the same inode, cut to zero.
fn truncate(path: &std::path::Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(0)
        .expect("truncate");
}

/// A new file renamed over the live name (a new inode under the same name).
fn replace(dir: &std::path::Path, ids: std::ops::Range<usize>) {
    let tmp = dir.join("replacement.tmp");
    append(&tmp, ids, 0);
    std::fs::rename(&tmp, dir.join(LIVE)).expect("rename over");
}

#[test]
fn a_live_file_truncated_in_place_while_running_is_read_again_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..10, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    assert_eq!(drain(&mut r).0, (0..10).collect::<Vec<_>>());
    truncate(&live);
    // The new content outgrows the old offset before the reader looks again.
    append(&live, 100..140, 0);
    assert_eq!(drain(&mut r).0, (100..140).collect::<Vec<_>>());
    assert_eq!(
        lost_lines(&mut r, LossReason::Truncated),
        0,
        "nothing unread was cut"
    );
    append(&live, 140..142, 0);
    assert_eq!(drain(&mut r).0, vec![140, 141]);
}

#[test]
fn a_truncation_that_cuts_a_line_held_in_part_counts_exactly_that_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..5, 0);
    let partial = line(5, 0);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&live)
        .expect("open");
    std::io::Write::write_all(&mut f, &partial.as_bytes()[..30]).expect("partial");
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    assert_eq!(drain(&mut r).0, (0..5).collect::<Vec<_>>());
    truncate(&live);
    append(&live, 100..103, 0);
    assert_eq!(drain(&mut r).0, vec![100, 101, 102]);
    assert_eq!(lost_lines(&mut r, LossReason::Truncated), 1);
}

#[test]
fn a_live_file_truncated_while_stopped_is_read_from_its_start_and_nothing_is_sent_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..10, 0);
    rotate(dir.path(), 1);
    append(&live, 10..20, 0);
    compress(&rotate(dir.path(), 2));
    append(&live, 20..30, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    let (ids, cp) = drain(&mut r);
    assert_eq!(ids, (0..30).collect::<Vec<_>>());
    drop(r);
    truncate(&live);
    append(&live, 100..160, 0);
    let mut r = LineReader::open(dir.path(), LIVE, cp).expect("reopen");
    assert_eq!(
        drain(&mut r).0,
        (100..160).collect::<Vec<_>>(),
        "0 duplicates"
    );
    assert_eq!(r.take_lost_files(), 0);
    assert_eq!(lost_lines(&mut r, LossReason::Truncated), 0);
}

#[test]
fn a_live_file_replaced_under_the_same_name_while_running_is_read_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..10, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    assert_eq!(drain(&mut r).0, (0..10).collect::<Vec<_>>());
    replace(dir.path(), 100..120);
    assert_eq!(drain(&mut r).0, (100..120).collect::<Vec<_>>());
    append(&live, 120..121, 0);
    assert_eq!(drain(&mut r).0, vec![120]);
}

#[test]
fn a_live_file_replaced_while_stopped_never_sends_the_files_already_shipped_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..10, 0);
    rotate(dir.path(), 1);
    append(&live, 10..20, 0);
    let rotated = rotate(dir.path(), 2);
    append(&live, 20..30, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    let (ids, cp) = drain(&mut r);
    assert_eq!(ids, (0..30).collect::<Vec<_>>());
    drop(r);
    // Gzipped after it was shipped: a new inode, the same fingerprint, still done.
    compress(&rotated);
    replace(dir.path(), 100..110);
    let mut r = LineReader::open(dir.path(), LIVE, cp).expect("reopen");
    assert_eq!(
        drain(&mut r).0,
        (100..110).collect::<Vec<_>>(),
        "0 duplicates"
    );
    assert_eq!(lost_lines(&mut r, LossReason::Truncated), 0);
}

#[test]
fn a_rotated_file_gzipped_mid_read_keeps_its_identity_and_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..10, 0);
    let rotated = rotate(dir.path(), 1);
    append(&live, 10..15, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    let mut buf = Vec::new();
    let mut cp = None;
    for _ in 0..6 {
        if let Poll::Line(p) = r.next_line(&mut buf).expect("read") {
            cp = Some(p);
        }
    }
    drop(r);
    compress(&rotated);
    let mut r = LineReader::open(dir.path(), LIVE, cp).expect("reopen");
    assert_eq!(drain(&mut r).0, (6..15).collect::<Vec<_>>());
    assert_eq!(r.take_lost_files(), 0);
}

#[test]
fn a_checkpoint_of_the_previous_format_resumes_without_sending_anything_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join(LIVE);
    append(&live, 0..10, 0);
    rotate(dir.path(), 1);
    append(&live, 10..20, 0);
    let mut r = LineReader::open(dir.path(), LIVE, None).expect("open");
    let (_, cp) = drain(&mut r);
    let cp = cp.expect("read");
    drop(r);
    // What the previous version stored: no device, no list of finished files.
    let path = dir.path().join("cp");
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"inode":{},"first_line_hash":{},"offset":{}}}"#,
            cp.file.inode, cp.file.fingerprint, cp.offset
        ),
    )
    .expect("write v1");
    let v1 = checkpoint::load(&path).expect("load").expect("v1 accepted");
    append(&live, 20..25, 0);
    let mut r = LineReader::open(dir.path(), LIVE, Some(v1)).expect("reopen");
    let (ids, cp2) = drain(&mut r);
    assert_eq!(ids, (20..25).collect::<Vec<_>>());
    // Migrated: the rotated file is now listed as done, so even a truncation of the
    // live file later cannot send it again.
    assert_eq!(cp2.expect("position").done.len(), 1);
}
