//! What the kernel drops in front of the dataplane, where the workers' own counters
//! cannot see it: packets routed into a tunnel while its TUN queue was full (the
//! interface's `tx_dropped`: the workers fell behind), and datagrams for a port-4500
//! socket whose receive buffer was full. Where a tunnel loses packets under load, these
//! say which side of the worker it was.

use std::collections::HashMap;

/// Where the calling thread's network namespace lists its interfaces' counters (the
/// TUNs are in the namespace of the thread that created them).
const NET_DEV: &str = "/proc/thread-self/net/dev";

/// Each interface's transmit drops in a `/proc/net/dev` text: the 12th counter after
/// `name:` (receive: octets, packets, errs, drop, fifo, frame, compressed, multicast;
/// transmit: octets, packets, errs, drop, ...). Lines that do not parse are skipped.
pub(crate) fn tx_dropped(net_dev: &str) -> HashMap<&str, u64> {
    net_dev
        .lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let drop = counters.split_whitespace().nth(11)?.parse().ok()?;
            Some((name.trim(), drop))
        })
        .collect()
}

/// [`tx_dropped`] of the calling thread's namespace; empty when it cannot be read.
pub(crate) fn read_tx_dropped() -> HashMap<String, u64> {
    match std::fs::read_to_string(NET_DEV) {
        Ok(text) => tx_dropped(&text)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        Err(e) => {
            tracing::debug!("{NET_DEV}: {e}");
            HashMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tx_dropped;

    /// The layout `dev_seq_printf_stats` (net/core/net-procfs.c) prints.
    #[test]
    fn transmit_drops_are_the_twelfth_counter() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
  rvb0: 9876543   70000    1    2    3     4          5         6  5432100   40000    7  1234    8     9      10         11
eth0:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
short: 1 2 3
";
        let d = tx_dropped(text);
        assert_eq!(d.get("lo"), Some(&0));
        assert_eq!(d.get("rvb0"), Some(&1234));
        // No space after the colon (a long counter): still parsed.
        assert_eq!(d.get("eth0"), Some(&12));
        assert_eq!(d.get("short"), None);
        assert_eq!(d.len(), 3, "the two header lines are not interfaces");
    }
}
