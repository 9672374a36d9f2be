//! The production DENY-fold flush: the `fold_flush` program takes the keys of the folds
//! to examine as packet data, so userspace runs it through BPF_PROG_TEST_RUN with the
//! keys of `FOLDS`, one batch of keys per run.

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use datapath_common::{FlowKey, program_names};

use crate::DatapathError;

/// Fold keys one `fold_flush` run reads (FLUSH_BATCH in the kernel crate).
const FLUSH_BATCH: usize = 32;

/// Runs the fold flush over `keys`, in batches.
pub(crate) fn flush_folds(prog: &SchedClassifier, keys: &[FlowKey]) -> Result<(), DatapathError> {
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
