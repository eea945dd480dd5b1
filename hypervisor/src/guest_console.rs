//! Where the guest's console bytes go when they do not come through the console ring: the
//! `console_io` hypercall and the emulated debug port.

use std::io::Write;

/// The console's output side.
pub trait ConsoleSink: std::fmt::Debug {
    /// Writes guest console bytes.
    fn write_console(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

/// Console output to the VMM's stdout, flushed per write so it interleaves with logs correctly.
#[derive(Debug, Default)]
pub struct Stdout;

impl ConsoleSink for Stdout {
    fn write_console(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }
}
