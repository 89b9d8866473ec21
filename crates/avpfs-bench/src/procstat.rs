//! What /proc tells about a daemon: CPU time, resident memory, open
//! descriptors; the CPU time of the calling thread for the host baseline;
//! and the number of online CPUs.

use std::fs;
use std::time::Duration;

use crate::error::{Error, IoContext};

/// Number of online CPUs.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time of a process at one moment, read two ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSample {
    /// utime + stime from `/proc/PID/stat` (clock-tick resolution; includes
    /// threads that have exited).
    pub ticks: Duration,
    /// Each thread's on-CPU time from `/proc/PID/task/*/schedstat`
    /// (nanosecond resolution), by thread id, in thread-id order.
    pub sched: Option<Vec<(u32, Duration)>>,
}

impl CpuSample {
    /// Reads the CPU time of process `pid`.
    pub fn read(pid: u32) -> Result<CpuSample, Error> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ctx(|| format!("reading /proc/{pid}/stat"))?;
        let ticks = parse_stat_cpu(&stat).ok_or_else(|| Error::Io {
            context: format!("parsing /proc/{pid}/stat"),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })?;
        Ok(CpuSample { ticks, sched: read_schedstat(pid) })
    }

    /// CPU time used between `earlier` and `self`. schedstat is precise
    /// for the threads alive now (a thread started since counts whole), but
    /// misses the time of threads that exited in between, which the tick
    /// count (coarse: whole clock ticks) includes: the larger of the two.
    /// When the same threads were alive at both samples that is the
    /// schedstat difference.
    pub fn since(&self, earlier: &CpuSample) -> Duration {
        let ticks = self.ticks.saturating_sub(earlier.ticks);
        let (Some(now), Some(then)) = (&self.sched, &earlier.sched) else { return ticks };
        let before = |tid: u32| then.binary_search_by_key(&tid, |&(t, _)| t).map_or(Duration::ZERO, |i| then[i].1);
        let precise: Duration = now.iter().map(|&(tid, cpu)| cpu.saturating_sub(before(tid))).sum();
        let same_threads = now.len() == then.len() && now.iter().zip(then).all(|(a, b)| a.0 == b.0);
        if same_threads {
            precise
        } else {
            precise.max(ticks)
        }
    }
}

/// utime + stime of a `/proc/PID/stat` line.
fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks_to_duration(utime + stime))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    let hz = avpfs_sys::process::clock_ticks_per_second().unwrap_or(100);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

fn read_schedstat(pid: u32) -> Option<Vec<(u32, Duration)>> {
    let mut tids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    let mut threads = Vec::with_capacity(tids.len());
    for tid in tids {
        let s = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
        threads.push((tid, Duration::from_nanos(s.split_whitespace().next()?.parse().ok()?)));
    }
    Some(threads)
}

/// The first process (lowest pid) whose command line has the arguments
/// `args` one after the other, e.g. the vhost-device-vsock that
/// `run-guest.sh` started with `--uds-path PATH`, PATH being unique to one
/// guest (run-guest.sh itself has PATH too, after `--vsock-uds`).
pub fn find_process_with_args(args: &[&std::ffi::OsStr]) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt;
    let mut pids: Vec<u32> =
        fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let argv: Vec<&[u8]> = c.split(|&b| b == 0).collect();
            !args.is_empty() && argv.windows(args.len()).any(|w| w.iter().zip(args).all(|(a, b)| *a == b.as_bytes()))
        })
    })
}

/// Memory of a process from `/proc/PID/status`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Memory {
    /// VmRSS: all resident pages, the guest memory the daemon touched included.
    pub rss: u64,
    /// RssAnon: the daemon's own heap and stacks (what its inode table costs).
    pub anon: u64,
}

impl Memory {
    /// Reads the memory of process `pid`.
    pub fn read(pid: u32) -> Result<Memory, Error> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ctx(|| format!("reading /proc/{pid}/status"))?;
        Ok(parse_status_memory(&status))
    }
}

fn parse_status_memory(status: &str) -> Memory {
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Memory { rss: field("VmRSS:"), anon: field("RssAnon:") }
}

/// Number of open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> Result<usize, Error> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd")).ctx(|| format!("listing /proc/{pid}/fd"))?.count())
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    avpfs_sys::process::thread_cpu_time().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (a b) c)) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        let hz = ticks_to_duration(1);
        assert_eq!(parse_stat_cpu(line), Some(hz * 300));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn parses_status_memory() {
        let s = "Name:\tx\nVmRSS:\t  2048 kB\nRssAnon:\t  1024 kB\nRssFile:\t 1024 kB\n";
        assert_eq!(parse_status_memory(s), Memory { rss: 2048 * 1024, anon: 1024 * 1024 });
    }

    #[test]
    fn cpu_since_counts_each_thread_and_the_ones_that_exited() {
        let ms = Duration::from_millis;
        let sample = |ticks, sched: &[(u32, Duration)]| CpuSample { ticks: ms(ticks), sched: Some(sched.to_vec()) };
        // The same threads: the schedstat difference, not the coarse ticks.
        let a = sample(100, &[(1, ms(10)), (2, ms(20))]);
        assert_eq!(sample(200, &[(1, ms(15)), (2, ms(80))]).since(&a), ms(65));
        // Thread 3 started (counted whole) and thread 2 kept running.
        assert_eq!(sample(110, &[(1, ms(10)), (2, ms(80)), (3, ms(5))]).since(&a), ms(65));
        // Thread 2 exited after working: only the ticks saw that time.
        assert_eq!(sample(190, &[(1, ms(15))]).since(&a), ms(90));
        // No schedstat: the ticks.
        let t = CpuSample { ticks: ms(130), sched: None };
        assert_eq!(t.since(&a), ms(30));
    }

    #[test]
    fn reads_our_own_process() {
        let pid = std::process::id();
        let a = CpuSample::read(pid).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let b = CpuSample::read(pid).unwrap();
        assert!(b.since(&a) <= Duration::from_secs(60));
        assert!(Memory::read(pid).unwrap().rss > 0);
        assert!(fd_count(pid).unwrap() >= 3);
        assert!(thread_cpu_time() > Duration::ZERO);
    }

    #[test]
    fn finds_a_process_by_one_of_its_arguments() {
        let marker = format!("avpfs-bench-marker-{}", std::process::id());
        let mut child =
            std::process::Command::new("sh").args(["-c", "sleep 30; :", "--uds-path", &marker]).spawn().unwrap();
        let args = [std::ffi::OsStr::new("--uds-path"), std::ffi::OsStr::new(&marker)];
        // The child has exec'd sh once it is visible with its own argv.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        let mut found = None;
        while found.is_none() && std::time::Instant::now() < until {
            found = find_process_with_args(&args);
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(child.id()));
        // The same words in another order, or the path alone after another flag, are not it.
        assert_eq!(find_process_with_args(&[args[1], args[0]]), None);
        assert_eq!(find_process_with_args(&[std::ffi::OsStr::new("--vsock-uds"), args[1]]), None);
    }
}
