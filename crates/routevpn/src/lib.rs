//! routevpn: route-based IPsec VPN daemon — configuration, control socket, CLI and the
//! I/O driver around the sans-IO `ike` and `esp` cores.

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod generate;
pub mod lab;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod routing;
pub mod sys;
