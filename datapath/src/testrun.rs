//! Running loaded programs through BPF_PROG_TEST_RUN: on a frame with the interface
//! set in the context (`__sk_buff.ifindex`), for tests and benchmarks, and the fold
//! flush, which takes its keys as packet data.

use std::time::Duration;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use datapath_common::{FlowKey, program_names};

use crate::DatapathError;

/// Size of `struct __sk_buff` and the offsets the test context sets.
const SKB_SIZE: usize = 192;
const SKB_IFINDEX: usize = 40;
const SKB_GSO_SEGS: usize = 164;
/// Fold keys one `fold_flush` run reads (FLUSH_BATCH in the kernel crate).
const FLUSH_BATCH: usize = 32;

/// The outcome of one test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunResult {
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
pub fn run(
    prog: &SchedClassifier,
    frame: &[u8],
    ifindex: u32,
    gso_segs: u32,
    repeat: u32,
) -> Result<RunResult, DatapathError> {
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
    Ok(RunResult {
        action: result.return_value as i32,
        duration: result.duration,
    })
}

/// Runs the fold flush over `keys`, in batches.
pub(crate) fn run_fold_flush(
    prog: &SchedClassifier,
    keys: &[FlowKey],
) -> Result<(), DatapathError> {
    for chunk in keys.chunks(FLUSH_BATCH) {
        let mut data = Vec::with_capacity(size_of_val(chunk));
        for key in chunk {
            // SAFETY: FlowKey is repr(C) plain data with explicit padding; viewing it
            // as bytes reads only initialised memory.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (key as *const FlowKey).cast::<u8>(),
                    size_of::<FlowKey>(),
                )
            };
            data.extend_from_slice(bytes);
        }
        let opts = TestRunOptions {
            data_in: Some(&data),
            ..TestRunOptions::new()
        };
        prog.test_run(opts)
            .map_err(|e| DatapathError::program(program_names::FOLD_FLUSH, e))?;
    }
    Ok(())
}
