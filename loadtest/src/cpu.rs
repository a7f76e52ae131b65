//! A process's CPU time, from `/proc/<pid>/stat`: the broker's cost per message.

use anyhow::{bail, Context};

/// utime + stime of process `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("--broker-pid {pid}: cannot read {path}"))?;
    let Some(ticks) = parse_ticks(&stat) else {
        bail!("--broker-pid {pid}: cannot read utime and stime in {path}");
    };
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_sec = if per_sec > 0 { per_sec as f64 } else { 100.0 };
    Ok(ticks as f64 / per_sec)
}

/// utime + stime in clock ticks: fields 14 and 15, counted after the command name,
/// which is in parentheses and may itself hold spaces and parentheses.
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utime_plus_stime() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 1000 1000000 300";
        assert_eq!(super::parse_ticks(stat), Some(300));
        assert_eq!(super::parse_ticks("4242 (x"), None);
    }

    #[test]
    fn our_own_cpu_time_is_readable() {
        assert!(super::cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }
}
