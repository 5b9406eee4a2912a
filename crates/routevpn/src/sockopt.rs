//! Socket options that keep IKE and ESP-in-UDP packets out of the tunnels they carry.

use std::io;
use std::os::fd::AsRawFd;

/// SO_BINDTODEVICE so the socket's packets only use routes via the underlay interface, even when a
/// (default) route points into a tunnel (Linux restricts the FIB lookup to the bound device's nexthops).
///
/// Received packets are also limited to those arriving on `ifname`. Needs CAP_NET_RAW
/// (root). `ifname` must be a valid interface name (1–15 bytes, no NUL); an interface
/// that does not exist gives ENODEV.
pub fn bind_to_device(sock: &impl AsRawFd, ifname: &str) -> io::Result<()> {
    let name = ifname.as_bytes();
    // IFNAMSIZ includes the terminating NUL.
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {ifname:?}"),
        ));
    }
    let mut buf = [0u8; libc::IFNAMSIZ];
    buf[..name.len()].copy_from_slice(name);
    let len = libc::socklen_t::try_from(name.len() + 1)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `buf` is a live, NUL-terminated buffer of at least `len` bytes for the
    // duration of the call; the kernel only reads `len` bytes from it and copies them.
    // An invalid fd is reported by the kernel as EBADF, not undefined behaviour.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            buf.as_ptr().cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // The bare OS error, so callers can match on the errno (ENODEV, EPERM).
        Err(io::Error::last_os_error())
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
