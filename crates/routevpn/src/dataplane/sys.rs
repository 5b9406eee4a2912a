//! The few raw system calls the dataplane needs beyond `quinn-udp` and `tun-rs`.

use std::io;
use std::os::fd::RawFd;

/// Waits until `fd` is ready for `events` or `timeout_ms` passes; returns
/// whether it became ready. `EINTR` counts as "not ready".
pub(crate) fn wait_fd(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid, initialized pollfd and we pass a count of 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(n > 0)
}

fn setsockopt_int(fd: RawFd, opt: libc::c_int, val: libc::c_int) -> bool {
    // SAFETY: `val` outlives the call and the length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Raises SO_RCVBUF/SO_SNDBUF to `bytes`: the `FORCE` variants pass the
/// `rmem_max`/`wmem_max` caps when we have CAP_NET_ADMIN, else the plain
/// options get as much as the caps allow. Failure is not fatal.
pub(crate) fn set_buffer_sizes(fd: RawFd, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if !setsockopt_int(fd, libc::SO_RCVBUFFORCE, v) {
        setsockopt_int(fd, libc::SO_RCVBUF, v);
    }
    if !setsockopt_int(fd, libc::SO_SNDBUFFORCE, v) {
        setsockopt_int(fd, libc::SO_SNDBUF, v);
    }
}
