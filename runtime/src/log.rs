//! The `--log FILE --log-format text|json` log runc keeps, and RFC 3339 timestamps.
//!
//! containerd's shim passes `--log BUNDLE/log.json --log-format json` and, when a command fails,
//! reads the file's last `"level":"error"` entry into its own error message, so an entry is one
//! JSON object per line with `level`, `msg` and an RFC 3339 `time`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// How log entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `time="…" level=error msg="…"`, as logrus writes text.
    Text,
    /// `{"level":"error","msg":"…","time":"…"}`, one object a line.
    Json,
}

/// Where a command's log entries go (nowhere without `--log`).
#[derive(Debug)]
pub struct Logger {
    path: Option<PathBuf>,
    format: LogFormat,
}

impl Logger {
    /// A logger appending to `path` in `format`.
    pub fn new(path: Option<PathBuf>, format: LogFormat) -> Logger {
        Logger { path, format }
    }

    /// Appends one entry at `level`; a log that cannot be written is silently skipped (the
    /// error it would have carried is on stderr too).
    pub fn log(&self, level: &str, msg: &str) {
        let Some(path) = &self.path else { return };
        let line = entry(self.format, level, msg, SystemTime::now());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// One log line, newline included.
fn entry(format: LogFormat, level: &str, msg: &str, at: SystemTime) -> String {
    let time = rfc3339(at);
    match format {
        LogFormat::Json => {
            let obj = serde_json::json!({ "level": level, "msg": msg, "time": time });
            format!("{obj}\n")
        }
        LogFormat::Text => {
            let quoted = serde_json::to_string(msg).unwrap_or_default();
            format!("time=\"{time}\" level={level} msg={quoted}\n")
        }
    }
}

/// `t` in UTC as RFC 3339 with nanoseconds, e.g. `2024-05-01T12:00:00.000000001Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap day in a year divisible by 400) and a time of day with nanoseconds.
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 3_723, 5);
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert_eq!(rfc3339(t), "2024-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn json_entry_is_one_object_per_line() {
        let line = entry(LogFormat::Json, "error", "a \"quoted\" msg", UNIX_EPOCH);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "a \"quoted\" msg");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn text_entry() {
        let line = entry(LogFormat::Text, "error", "bad", UNIX_EPOCH);
        assert_eq!(
            line,
            "time=\"1970-01-01T00:00:00.000000000Z\" level=error msg=\"bad\"\n"
        );
    }
}
