//! Userspace side of the kernel datapath.
