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

    /// An async reader for tokio: waits for readiness or the poll interval.
    ///
    /// # Errors
    /// Registering the ring's fd with the runtime failed.
    pub fn into_async(self) -> Result<AsyncEventReader, DatapathError> {
        let malformed = self.malformed;
        // SAFETY: the ring's fd is owned by the RingBuf moved into the AsyncFd, stays
        // open for its whole lifetime and as_raw_fd always returns that same fd.
        let inner = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                self.ring,
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(|e| DatapathError::Ring(std::io::Error::other(e.to_string())))?;
        Ok(AsyncEventReader { inner, malformed })
    }
}

pub struct AsyncEventReader {
    inner: tokio::io::unix::AsyncFd<RingBuf<MapData>>,
    malformed: u64,
}

impl AsyncEventReader {
    /// Waits for events (at most `poll_interval`, since wake-ups are adaptive), then
    /// hands every pending event to `f`; returns how many.
    ///
    /// # Errors
    /// The runtime's readiness wait failed.
    pub async fn next_batch(
        &mut self,
        poll_interval: Duration,
        mut f: impl FnMut(&FlowEvent),
    ) -> Result<usize, DatapathError> {
        if let Ok(guard) = tokio::time::timeout(poll_interval, self.inner.readable_mut()).await {
            guard.map_err(DatapathError::Ring)?.clear_ready();
        }
        let ring = self.inner.get_mut();
        let mut read = 0;
        while let Some(item) = ring.next() {
            match decode_event(&item) {
                Some(event) => f(&event),
                None => self.malformed += 1,
            }
            read += 1;
        }
        Ok(read)
    }

    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}
