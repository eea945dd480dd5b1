//! A [`log`] backend over the console: `log::info!` and friends print one line each, with one
//! `console_io` hypercall, as `[LEVEL target] message`.
//!
//! The boot code installs it with the level from the kernel command line
//! (`loglevel=off|error|warn|info|debug|trace`, default `info`; see [`level_from_cmdline`]).

use core::fmt::Write;

use log::{LevelFilter, Log, Metadata, Record};

use crate::console::{LineBuffer, PRINT_BUFFER_SIZE};

/// The level used when the command line does not name one.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::Info;

/// The console logger.
#[derive(Debug)]
pub struct ConsoleLogger;

/// The one instance [`init`] installs.
pub static LOGGER: ConsoleLogger = ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = LineBuffer::<PRINT_BUFFER_SIZE>::new();
        let _ = writeln!(
            line,
            "[{} {}] {}",
            record.level(),
            record.target(),
            record.args()
        );
        line.flush();
    }

    fn flush(&self) {}
}

/// Installs [`LOGGER`] as the `log` backend (once; later calls only change the level) and sets
/// the maximum level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// The log level named by `loglevel=` in `cmdline`, or `None` if there is no such word or it
/// names no level. Level names are case-insensitive.
pub fn level_from_cmdline(cmdline: &str) -> Option<LevelFilter> {
    let name = crate::start_info::find_param(cmdline, "loglevel")?;
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loglevel_is_parsed_from_the_cmdline() {
        assert_eq!(
            level_from_cmdline("loglevel=debug"),
            Some(LevelFilter::Debug)
        );
        assert_eq!(
            level_from_cmdline("x loglevel=TRACE y"),
            Some(LevelFilter::Trace)
        );
        assert_eq!(
            level_from_cmdline("loglevel=error"),
            Some(LevelFilter::Error)
        );
        assert_eq!(level_from_cmdline("loglevel=warn"), Some(LevelFilter::Warn));
        assert_eq!(level_from_cmdline("loglevel=off"), Some(LevelFilter::Off));
        assert_eq!(level_from_cmdline("loglevel=info"), Some(LevelFilter::Info));
        assert_eq!(level_from_cmdline("loglevel=loud"), None);
        assert_eq!(level_from_cmdline("panic"), None);
        assert_eq!(level_from_cmdline(""), None);
    }
}
