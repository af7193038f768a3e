//! Processes, timing, CPU accounting, DER and formatting helpers.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Runs `cmd` to completion (bounded by `limit`), returning stdout; fails loudly with stderr.
pub fn run(cmd: &mut Command, limit: Duration) -> anyhow::Result<String> {
    let what = format!("{cmd:?}");
    let out = Bounded::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))?
        .wait_output(limit)
        .with_context(|| what.clone())?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Output of a bounded child.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A child in its own process group, killed (the whole group) when dropped or late.
pub struct Bounded {
    pub child: Child,
    pub started: Instant,
    done: bool,
}

impl Bounded {
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Bounded> {
        let started = Instant::now();
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Bounded {
            child,
            started,
            done: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the child exits or `limit` (from its start) passes; `None` when it was
    /// killed for being late.
    pub fn wait_limited(&mut self, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.done = true;
                return Ok(Some(status));
            }
            if self.started.elapsed() >= limit {
                self.kill();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Collects stdout and stderr (read on threads, so a chatty child cannot block) and
    /// waits; errors when `limit` passes.
    pub fn wait_output(mut self, limit: Duration) -> anyhow::Result<Output> {
        let mut so = self.child.stdout.take();
        let mut se = self.child.stderr.take();
        let t1 = std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(s) = so.as_mut() {
                let _ = std::io::Read::read_to_end(s, &mut v);
            }
            v
        });
        let t2 = std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(s) = se.as_mut() {
                let _ = std::io::Read::read_to_end(s, &mut v);
            }
            v
        });
        let status = self.wait_limited(limit)?;
        let stdout = t1.join().unwrap_or_default();
        let stderr = t2.join().unwrap_or_default();
        match status {
            Some(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
            None => bail!("killed after {limit:?}"),
        }
    }

    /// SIGTERM to the group, then SIGKILL if it is still there after 3 s.
    pub fn kill(&mut self) {
        if self.done {
            return;
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        self.done = true;
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Clock ticks per second for /proc CPU times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (pgrp, utime + stime in ticks) of one /proc/<pid>/stat.
fn stat_of(path: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let pgrp = f.get(2)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

/// CPU seconds used so far by every live process of process group `pgid`.
pub fn group_cpu_seconds(pgid: u32, ticks: f64) -> f64 {
    let mut total = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Some((pgrp, t)) = stat_of(&e.path().join("stat"))
                && pgrp == u64::from(pgid)
            {
                total += t;
            }
        }
    }
    total as f64 / ticks
}

/// CPU seconds used so far by this process (all threads).
pub fn self_cpu_seconds(ticks: f64) -> f64 {
    stat_of(Path::new("/proc/self/stat")).map_or(0.0, |(_, t)| t as f64 / ticks)
}

/// A line `Key: value kB` of /proc/self/status, in kB.
pub fn self_status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `cmd` under `/usr/bin/time -v`, bounded by `limit`: (wall time, peak RSS kB,
/// status); `None` status when killed for being late.
pub struct Timed {
    pub wall: Duration,
    pub max_rss_kb: Option<u64>,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

pub fn time_v(program: &str, args: &[&str], cwd: &Path, limit: Duration) -> anyhow::Result<Timed> {
    let report = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg("-o")
        .arg(report.path())
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = Bounded::spawn(&mut cmd)?;
    let started = child.started;
    let (status, stdout, stderr) = match child.wait_output(limit) {
        Ok(o) => (
            Some(o.status),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(_) => (None, String::new(), String::new()),
    };
    let wall = started.elapsed();
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    let max_rss_kb = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok());
    Ok(Timed {
        wall,
        max_rss_kb,
        status,
        stdout,
        stderr,
    })
}

/// DER tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Percentile (0–100) of sorted values.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A number with thousands separators and `decimals` decimals.
pub fn num(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), format!(".{f}")),
        None => (s, String::new()),
    };
    let (sign, digits) = match int.strip_prefix('-') {
        Some(d) => ("-", d.to_string()),
        None => ("", int),
    };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

/// `ours / peer` as `0.42×`.
pub fn ratio(ours: f64, peer: f64) -> String {
    if peer <= 0.0 || !ours.is_finite() || !peer.is_finite() {
        return "n/a".into();
    }
    let r = ours / peer;
    if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

pub fn mb(kb: u64) -> String {
    num(kb as f64 / 1024.0, 1)
}
