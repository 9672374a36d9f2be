//! Running a loaded classifier on one frame through BPF_PROG_TEST_RUN, with the
//! interface and GSO segment count set in the context (`__sk_buff`): how tests and
//! benchmarks judge packets without sending them.

use std::time::Duration;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};

use crate::DatapathError;

/// Size of `struct __sk_buff` and the offsets the test context sets.
const SKB_SIZE: usize = 192;
const SKB_IFINDEX: usize = 40;
const SKB_GSO_SEGS: usize = 164;

/// What the program did with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameOutcome {
    /// The program's return code (-1 = TCX_NEXT, 2 = TC_ACT_SHOT).
    pub action: i32,
    /// Average time per repetition as the kernel measured it.
    pub duration: Duration,
}

/// A `__sk_buff` context with the interface and GSO segment count set.
pub fn skb_context(ifindex: u32, gso_segs: u32) -> [u8; SKB_SIZE] {
    let mut ctx = [0u8; SKB_SIZE];
    ctx[SKB_IFINDEX..SKB_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
    ctx[SKB_GSO_SEGS..SKB_GSO_SEGS + 4].copy_from_slice(&gso_segs.to_ne_bytes());
    ctx
}

/// Runs `prog` on `frame` as if it arrived on `ifindex` (an interface that exists in
/// the caller's network namespace), `repeat` times.
///
/// # Errors
/// The kernel refused the run (e.g. ENODEV for an unknown ifindex).
pub fn run_frame(
    prog: &SchedClassifier,
    frame: &[u8],
    ifindex: u32,
    gso_segs: u32,
    repeat: u32,
) -> Result<FrameOutcome, DatapathError> {
    let ctx = skb_context(ifindex, gso_segs);
    let opts = TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        repeat,
        ..TestRunOptions::new()
    };
    let result = prog
        .test_run(opts)
        .map_err(|e| DatapathError::program("test_run", e))?;
    Ok(FrameOutcome {
        action: result.return_value as i32,
        duration: result.duration,
    })
}
