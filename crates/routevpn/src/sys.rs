//! The socket options and system calls beyond what `socket2`, `quinn-udp` and `tun-rs`
//! offer; every `unsafe` of the daemon's I/O is here.

use std::io;
use std::mem::{size_of, size_of_val, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};

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
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Datagrams the kernel dropped at this socket since it opened, most for a full receive
/// buffer (`SO_MEMINFO`'s `SK_MEMINFO_DROPS`, the socket's `sk_drops`).
pub(crate) fn socket_drops(fd: RawFd) -> io::Result<u64> {
    let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` and `len` are live for the call and `len` is `info`'s size; the
    // kernel writes at most `len` octets (fewer on an older kernel, reported in `len`).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < size_of_val(&info) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO without a drop count",
        ));
    }
    Ok(u64::from(info[libc::SK_MEMINFO_DROPS as usize]))
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

/// Steers the datagrams of a SO_REUSEPORT group of `n` UDP sockets (this one and the
/// ones bound after it to the same address) by their first 32-bit word: socket
/// `word mod n`. For ESP in UDP that word is the SPI (RFC 3948 §2.1); IKE's non-ESP
/// marker (0) and a keepalive too short to load go to socket 0.
pub(crate) fn steer_reuseport_by_spi(fd: RawFd, n: u32) -> io::Result<()> {
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // Runs with the data at the UDP payload; an out-of-range load returns 0.
    let mut prog = [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n.max(1)),
        op(libc::BPF_RET | libc::BPF_A, 0),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: passes a pointer to a live sock_fprog (whose filter array outlives the
    // call) and its size; the kernel copies the program.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::addr_of!(fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A datagram as [`recv_with_ttl`] received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    /// TTL / hop limit (None if the kernel gave no ancillary data).
    pub ttl: Option<u8>,
    /// The interface it arrived on (IP_PKTINFO / IPV6_PKTINFO, when enabled).
    pub ifindex: Option<u32>,
}

/// Asks the kernel for the arrival interface of each datagram (IP_PKTINFO /
/// IPV6_RECVPKTINFO), reported by [`recv_with_ttl`].
pub fn set_recv_pktinfo(fd: RawFd, v6: bool) -> io::Result<()> {
    if v6 {
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// One datagram with its source, received TTL / hop limit (BFD's GTSM check, RFC 5881
/// §5) and arrival interface.
pub fn recv_with_ttl(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: all-zero is a valid bit pattern for these plain C structs.
    let mut from: libc::sockaddr_storage = unsafe { zeroed() };
    let mut cmsg_buf = [0u64; 16]; // 128 bytes, 8-aligned: a TTL and a PKTINFO cmsg.
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>() as _;
    // SAFETY: `msg` points at `from`, `iov` (over `buf`) and `cmsg_buf`, all live and of
    // the sizes given, for the duration of the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    let mut ifindex = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
    // msg_controllen; each data pointer is read only when the header's length says it
    // holds the type read (read_unaligned: no alignment assumption).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            let len = h.cmsg_len as usize;
            let fits = |size: usize| len >= libc::CMSG_LEN(size as u32) as usize;
            let is_ttl = (h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_TTL)
                || (h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_HOPLIMIT);
            if is_ttl && fits(size_of::<libc::c_int>()) {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                ttl = u8::try_from(v).ok();
            }
            if h.cmsg_level == libc::IPPROTO_IP
                && h.cmsg_type == libc::IP_PKTINFO
                && fits(size_of::<libc::in_pktinfo>())
            {
                let p = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                ifindex = u32::try_from(p.ipi_ifindex).ok();
            }
            if h.cmsg_level == libc::IPPROTO_IPV6
                && h.cmsg_type == libc::IPV6_PKTINFO
                && fits(size_of::<libc::in6_pktinfo>())
            {
                let p = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                ifindex = Some(p.ipi6_ifindex);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let from = sockaddr_to_std(&from).ok_or_else(|| io::Error::other("unknown address family"))?;
    Ok(Received {
        len: n as usize,
        from,
        ttl,
        ifindex,
    })
}

/// `struct tcp_md5sig` (linux/tcp.h), which the libc crate does not define.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; 80],
}

/// TCP_MD5SIG (RFC 2385): segments to and from `peer` on this socket (a listener, or
/// one about to connect) carry and must carry an MD5 signature with `key` (1..=80
/// bytes); an empty key removes it.
pub fn set_tcp_md5sig(sock: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    // SAFETY: all-zero is a valid bit pattern for this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { zeroed() };
    let Some(dst) = sig.key.get_mut(..key.len()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 key longer than 80 bytes",
        ));
    };
    dst.copy_from_slice(key);
    sig.keylen = key.len() as u16;
    write_sockaddr(&mut sig.addr, peer);
    // SAFETY: `sig` is a live, initialized tcp_md5sig and the length passed is its size;
    // the kernel copies it. A bad fd is reported as EBADF.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast::<libc::c_void>(),
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    // The key's copy on the stack is wiped (the kernel has its own).
    sig.key.fill(0);
    // SAFETY: `sig.key` is a live array; a volatile read keeps the wipe from being elided.
    let _ = unsafe { std::ptr::read_volatile(&sig.key) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn write_sockaddr(s: &mut libc::sockaddr_storage, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            // SAFETY: a sockaddr_in fits in (and is aligned within) sockaddr_storage.
            let sin =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(a).to_be();
        }
        IpAddr::V6(a) => {
            // SAFETY: a sockaddr_in6 fits in (and is aligned within) sockaddr_storage.
            let sin6 =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
        }
    }
}

/// GTSM (RFC 5082 §3): send with TTL / hop limit 255 and have the kernel drop what
/// arrives with less than 254 (one hop away at most).
pub fn set_gtsm(fd: RawFd, v6: bool) -> io::Result<()> {
    if v6 {
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?;
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, 254)
    } else {
        set_int_option(fd, libc::IPPROTO_IP, libc::IP_TTL, 255)?;
        set_int_option(fd, libc::IPPROTO_IP, libc::IP_MINTTL, 254)
    }
}

fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which fits in it.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which fits in it.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Effective uid is 0 (namespaces, veths and nftables need root).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The id of group `name` from the system's group database (getgrnam_r(3), so NSS
/// sources count too); None when there is no such group.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return Ok(None); // a NUL byte: no group has that name
    };
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: all-zero is a valid `struct group` (null pointers, gid 0); getgrnam_r
        // only fills it with pointers into `buf`, which outlives every use below.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `cname` is NUL-terminated, `grp`, `buf` (with its true length) and
        // `result` are valid for writes for the whole call.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some(grp.gr_gid)),
            libc::ERANGE if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            // Some NSS modules report "not found" as an errno.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Sends signal `sig` to process `pid` (kill(2)).
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours; signalling the
    // wrong process is a logic error the caller guards against, not undefined behaviour.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the calling thread into the network namespace open as `ns` (setns(2)); other
/// threads and sockets already made stay where they are.
pub fn enter_netns(ns: &impl AsFd) -> io::Result<()> {
    // SAFETY: the borrowed fd stays open for the whole call; setns with CLONE_NEWNET only
    // changes this thread's network namespace and touches no memory of ours.
    let rc = unsafe { libc::setns(ns.as_fd().as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends SIGKILL to every process in process group `pgid` (a hook started with
/// `process_group(0)`, whose group id is its pid): a hook's own children go too.
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = i32::try_from(pgid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid process group"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative
    // pid addresses the group, and pgid > 1 rules out "every process" (-1).
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams sent to a socket nobody reads, past its receive buffer, are counted as
    /// its drops (what `dataplane.socket_drops` reports).
    #[test]
    fn a_full_receive_buffer_counts_drops() {
        use std::net::UdpSocket;
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_int_option(rx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4096).unwrap();
        assert_eq!(socket_drops(rx.as_raw_fd()).unwrap(), 0);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            tx.send_to(&[0u8; 1000], rx.local_addr().unwrap()).unwrap();
        }
        let drops = socket_drops(rx.as_raw_fd()).unwrap();
        // The buffer (8 KiB after the kernel doubles it) holds a few of the 200.
        assert!((150..=200).contains(&drops), "{drops} drops");
        assert!(socket_drops(-1).is_err(), "a bad descriptor is an error");
    }

    /// Issue 13: in a SO_REUSEPORT group of two, the program hands SPI 0x1000 (even) to
    /// the first socket and 0x1001 (odd) to the second, from one source 4-tuple (which
    /// the kernel's own hash would send to a single socket); IKE (marker 0) and a
    /// one-octet keepalive go to the first.
    #[test]
    fn reuseport_group_is_steered_by_spi() {
        use socket2::{Domain, Protocol, Socket, Type};
        use std::net::UdpSocket;
        let bind = |addr: std::net::SocketAddr| {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
            s.set_reuse_port(true).unwrap();
            s.bind(&addr.into()).unwrap();
            let s: UdpSocket = s.into();
            s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
                .unwrap();
            s
        };
        let first = bind("127.0.0.1:0".parse().unwrap());
        let addr = first.local_addr().unwrap();
        let second = bind(addr);
        steer_reuseport_by_spi(first.as_raw_fd(), 2).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut got = Vec::new();
        for (i, msg) in [
            &[0, 0, 0x10, 0x01, 0, 0, 0, 1][..],
            &[0, 0, 0x10, 0x00, 0, 0, 0, 1],
            &[0, 0, 0, 0, 1, 2, 3],
            &[0xFF],
            &[0, 0, 0x10, 0x03, 0, 0, 0, 2],
        ]
        .iter()
        .enumerate()
        {
            client.send_to(msg, addr).unwrap();
            let mut buf = [0u8; 16];
            let on = [(&first, 0), (&second, 1)]
                .iter()
                .find_map(|(s, n)| s.recv(&mut buf).ok().map(|_| *n));
            got.push((i, on));
        }
        assert_eq!(
            got,
            vec![
                (0, Some(1)),
                (1, Some(0)),
                (2, Some(0)),
                (3, Some(0)),
                (4, Some(1))
            ]
        );
    }

    #[test]
    fn group_lookup() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("no-such-group-routevpn-test").unwrap(), None);
        assert_eq!(group_id("bad\0name").unwrap(), None);
    }

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
