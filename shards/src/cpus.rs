//! Which CPUs the shards may be pinned to, checked before any thread starts.
//!
//! glommio reports a missing CPU only from inside the new executor thread
//! (and some of its placement code unwraps), so the pool checks the list up
//! front and fails with an error that names the CPU and the ones that exist.

use std::fmt;

use crate::StartError;

/// The online CPU ids of this machine, ascending. The broker resolves
/// `cores = "all"` to this list.
pub fn online_cpus() -> Result<Vec<usize>, StartError> {
    let set = glommio::CpuSet::online().map_err(|e| StartError::Topology(e.to_string()))?;
    let mut cpus: Vec<usize> = set.iter().map(|loc| loc.cpu).collect();
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Checks a configured CPU list against the online CPUs: not empty, no
/// duplicates (two shards on one core defeats thread-per-core), every CPU
/// online.
pub(crate) fn validate(cpus: &[usize], online: &[usize]) -> Result<(), StartError> {
    if cpus.is_empty() {
        return Err(StartError::NoCores {
            online: CpuList(online.to_vec()),
        });
    }
    for (i, &cpu) in cpus.iter().enumerate() {
        if !online.contains(&cpu) {
            return Err(StartError::CpuNotOnline {
                cpu,
                online: CpuList(online.to_vec()),
            });
        }
        if cpus[..i].contains(&cpu) {
            return Err(StartError::DuplicateCpu { cpu });
        }
    }
    Ok(())
}

/// A list of CPU ids, displayed compactly for error messages ("0-3, 6").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let mut first = true;
        let mut i = 0;
        while i < sorted.len() {
            let start = sorted[i];
            let mut end = start;
            while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
                i += 1;
                end = sorted[i];
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_list_display() {
        assert_eq!(CpuList(vec![]).to_string(), "none");
        assert_eq!(CpuList(vec![0]).to_string(), "0");
        assert_eq!(CpuList(vec![0, 1]).to_string(), "0-1");
        assert_eq!(CpuList(vec![6, 0, 1, 2, 3]).to_string(), "0-3, 6");
    }

    #[test]
    fn validate_rules() {
        let online = [0, 1];
        assert!(validate(&[0, 1], &online).is_ok());
        assert!(matches!(
            validate(&[], &online),
            Err(StartError::NoCores { .. })
        ));
        assert!(matches!(
            validate(&[1, 1], &online),
            Err(StartError::DuplicateCpu { cpu: 1 })
        ));
        let err = validate(&[0, 63], &online).unwrap_err();
        assert!(matches!(err, StartError::CpuNotOnline { cpu: 63, .. }));
        let msg = err.to_string();
        assert!(msg.contains("63") && msg.contains("0-1"), "{msg}");
    }

    #[test]
    fn this_machine_has_cpu_0() {
        assert!(online_cpus().unwrap().contains(&0));
    }
}
