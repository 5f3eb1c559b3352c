//! CPU time used by a process and its direct children (an nginx master and its workers), read
//! from /proc. Benchmarks report it per request: unlike requests per second it barely depends on
//! what else the machine is running, so peers compare fairly on a busy machine.

/// User + system seconds of `pid` and of every process whose parent is `pid`.
pub fn tree_seconds(pid: u32) -> f64 {
    let ticks = own_ticks(pid).unwrap_or(0) + children(pid).into_iter().filter_map(own_ticks).sum::<u64>();
    ticks as f64 / USER_HZ
}

fn own_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its closing ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent(child) == Some(pid))
        .collect()
}

/// Linux reports /proc times in USER_HZ, 100 on every architecture the project builds for.
const USER_HZ: f64 = 100.0;

#[cfg(test)]
mod tests {
    #[test]
    fn counts_the_cpu_a_busy_child_uses() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut seen = 0.0_f64;
        // Sample until the child exits: its time only grows while it runs.
        while child.try_wait().unwrap().is_none() {
            seen = seen.max(super::tree_seconds(pid));
        }
        assert!(seen > 0.0, "a shell counting to 300,000 used no CPU time");
    }
}
