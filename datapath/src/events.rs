//! Reading verdict events from the ring buffer: zero-copy decode of each record into
//! a `FlowEvent`, no allocation per event. The kernel wakes the reader only past a
//! fill threshold, so readers also poll on a short timer (see [`EventReader::wait`]).

use std::{
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use datapath_common::FlowEvent;

use crate::DatapathError;

/// Decodes one ring record; `None` when it is shorter than an event.
pub fn decode_event(bytes: &[u8]) -> Option<FlowEvent> {
    if bytes.len() < size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: the length was checked; FlowEvent is repr(C) plain data valid for any
    // bytes, and read_unaligned makes no alignment assumption.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<FlowEvent>()) })
}

pub struct EventReader {
    ring: RingBuf<MapData>,
    malformed: u64,
}

impl EventReader {
    pub(crate) fn new(ring: RingBuf<MapData>) -> Self {
        Self { ring, malformed: 0 }
    }

    /// Hands up to `max` pending events to `f`; returns how many records were read.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&FlowEvent)) -> usize {
        let mut read = 0;
        while read < max {
            let Some(item) = self.ring.next() else { break };
            match decode_event(&item) {
                Some(event) => f(&event),
                None => self.malformed += 1,
            }
            read += 1;
        }
        read
    }

    /// Records too short to be an event (a kernel/userspace ABI mismatch).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Waits until the kernel signals data or `timeout` passes; true when signalled.
    ///
    /// # Errors
    /// A failed poll(2) other than EINTR.
    pub fn wait(&self, timeout: Duration) -> Result<bool, DatapathError> {
        let mut pfd = libc::pollfd {
            fd: self.ring.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: pfd is one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(DatapathError::Ring(e));
        }
        Ok(rc > 0)
    }
}
