//! A process's resident memory, from `/proc/<pid>/status`.

use anyhow::{bail, Context};

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("--broker-pid {pid}: cannot read {path}"))?;
    match parse_vm_rss(&status) {
        Some(kib) => Ok(kib),
        None => bail!("--broker-pid {pid}: no VmRSS line in {path}"),
    }
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn vm_rss_in_kib() {
        let status = "Name:\tshardmq\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(super::parse_vm_rss(status), Some(12345));
        assert_eq!(super::parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn our_own_rss_is_readable() {
        assert!(super::rss_kib(std::process::id()).unwrap() > 0);
    }
}
