//! CPU time of a process's threads and of the whole host, from /proc: what `bench blk` and
//! `bench net` report to show which thread limits a result.

use std::collections::BTreeMap;

/// CPU use during a measurement.
#[derive(Clone, Debug, Default)]
pub struct Cpu {
    /// The VMM's threads by name: CPU seconds over wall seconds (1.0 = one core busy).
    pub threads: BTreeMap<String, f64>,
    /// The whole host: busy CPU seconds over wall seconds (at most the CPU count).
    pub system: f64,
}

/// CPU times at one moment: the VMM's threads by name and the host's busy time (seconds).
pub struct CpuSnapshot {
    pid: Option<u32>,
    threads: BTreeMap<String, f64>,
    system: f64,
}

/// Clock ticks per second for /proc's times.
fn ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

impl CpuSnapshot {
    /// The host's busy time, and with `pid` that process's threads' CPU times (`None` if it
    /// is gone).
    pub fn take(pid: Option<u32>) -> Option<CpuSnapshot> {
        let mut threads = BTreeMap::new();
        let tasks = match pid {
            Some(pid) => Some(std::fs::read_dir(format!("/proc/{pid}/task")).ok()?),
            None => None,
        };
        for task in tasks.into_iter().flatten().flatten() {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = |i: usize| {
                f.get(i - 3)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            *threads.entry(comm.trim().to_owned()).or_insert(0.0) += (t(14) + t(15)) / ticks();
        }
        Some(CpuSnapshot {
            pid,
            threads,
            system: system_busy(),
        })
    }

    pub fn until_now(self, seconds: f64) -> Cpu {
        let now = CpuSnapshot::take(self.pid);
        let mut threads = BTreeMap::new();
        if let Some(now) = &now {
            for (name, t) in &now.threads {
                let before = self.threads.get(name).copied().unwrap_or(0.0);
                threads.insert(name.clone(), (t - before) / seconds);
            }
        }
        Cpu {
            threads,
            system: (system_busy() - self.system) / seconds,
        }
    }
}

/// The host's busy CPU seconds so far (`/proc/stat`: all but idle and iowait).
fn system_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle) / ticks()
}

/// Runs `cmd` to completion like [`super::process::capture`] (standard output and error piped), killing
/// it after `limit`, and samples its threads' CPU time every 10 ms: returns its output and the
/// CPU use between the first and the last sample (nearly its whole life).
pub fn capture_sampled(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
) -> anyhow::Result<(super::process::Captured, Option<Cpu>)> {
    use anyhow::Context;
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = read(Box::new(child.stdout.take().expect("piped")));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let first = CpuSnapshot::take(Some(child.id()));
    let mut last: Option<(CpuSnapshot, Instant)> = None;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            killed = true;
        }
        // A process on its way out loses its threads' entries: keep the last full sample.
        if let Some(s) = CpuSnapshot::take(Some(child.id())).filter(|s| {
            !s.threads.is_empty()
                && last
                    .as_ref()
                    .is_none_or(|(l, _)| s.threads.len() >= l.threads.len())
        }) {
            last = Some((s, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let cpu = match (first, last) {
        (Some(first), Some((last, at))) => {
            let seconds = (at - started).as_secs_f64().max(1e-3);
            let mut threads = BTreeMap::new();
            for (name, t) in &last.threads {
                let before = first.threads.get(name).copied().unwrap_or(0.0);
                threads.insert(name.clone(), (t - before) / seconds);
            }
            Some(Cpu {
                threads,
                system: (last.system - first.system) / seconds,
            })
        }
        _ => None,
    };
    let mut stderr = err.join().unwrap_or_default();
    if killed {
        stderr.insert_str(0, "killed after the safety limit\n");
    }
    Ok((
        super::process::Captured {
            status: status.code(),
            stdout: out.join().unwrap_or_default(),
            stderr,
        },
        cpu,
    ))
}
