//! The socket options and system calls beyond what `socket2`, `quinn-udp` and `tun-rs`
//! offer; every `unsafe` in the daemon's socket handling outside BFD's `recvmsg` is here.

use std::io;
use std::os::fd::{AsFd, RawFd};

use socket2::SockRef;

/// SO_BINDTODEVICE so the socket's packets only use routes via the underlay interface, even when a
/// (default) route points into a tunnel (Linux restricts the FIB lookup to the bound device's nexthops).
///
/// Received packets are also limited to those arriving on `ifname`. Needs CAP_NET_RAW
/// (root). `ifname` must be a valid interface name (1–15 bytes, no NUL); an interface
/// that does not exist gives ENODEV.
pub fn bind_to_device(sock: &impl AsFd, ifname: &str) -> io::Result<()> {
    let name = ifname.as_bytes();
    // IFNAMSIZ includes the terminating NUL.
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {ifname:?}"),
        ));
    }
    // The bare OS error, so callers can match on the errno (ENODEV, EPERM).
    SockRef::from(sock).bind_device(Some(name))
}

/// Sets an integer socket option that `socket2` does not offer.
pub(crate) fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int for the duration of the call and the length passed
    // is its size; the kernel copies it. A bad fd is reported as EBADF.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

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

/// Raises SO_RCVBUF/SO_SNDBUF to `bytes`: the `FORCE` variants (which socket2 lacks)
/// pass the `rmem_max`/`wmem_max` caps when we have CAP_NET_ADMIN, else the plain
/// options get as much as the caps allow. Failure is not fatal.
pub(crate) fn set_buffer_sizes(fd: RawFd, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int_option(fd, libc::SOL_SOCKET, force, v).is_err() {
            let _ = set_int_option(fd, libc::SOL_SOCKET, plain, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_before_the_kernel() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for bad in ["", "a\0b", "sixteen-chars-xx"] {
            let e = bind_to_device(&sock, bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn unknown_interface_is_enodev() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = bind_to_device(&sock, "rvnosuchif0").unwrap_err();
        // EPERM without CAP_NET_RAW, ENODEV with it.
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::EPERM)),
            "{e}"
        );
    }

    #[test]
    fn binds_to_loopback_when_privileged() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        match bind_to_device(&sock, "lo") {
            Ok(()) => {}
            // Without CAP_NET_RAW the kernel refuses; that is not this function's fault.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
