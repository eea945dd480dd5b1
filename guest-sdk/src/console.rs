//! The early console: [`print!`](crate::print) and [`println!`](crate::println) over
//! `console_io` (docs/abi.md §3.5).
//!
//! Each print formats into a buffer on the stack ([`LineBuffer`]) and writes it with one
//! `console_io` hypercall, so a one-line `println!` costs exactly one exit to the VMM. Output
//! longer than the buffer is flushed in buffer-sized pieces. Nothing is shared between prints, so
//! printing needs no lock and works from any context, including the panic handler.

use core::fmt;

use crate::hypercall;

/// Bytes one print formats before it has to flush.
pub const PRINT_BUFFER_SIZE: usize = 1024;

/// A fixed-size formatting buffer that writes itself to the console when it fills up and when
/// [`LineBuffer::flush`] is called.
#[derive(Debug)]
pub struct LineBuffer<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineBuffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        LineBuffer {
            buf: [0; N],
            len: 0,
        }
    }

    /// The bytes buffered so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the buffered bytes to the console (if any) and empties the buffer.
    pub fn flush(&mut self) {
        if self.len > 0 {
            write_bytes(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Appends `bytes`, flushing whenever the buffer is full.
    pub fn push_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == N {
                self.flush();
            }
            let n = bytes.len().min(N - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }
}

impl<const N: usize> fmt::Write for LineBuffer<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes all of `bytes` to the console, one `console_io` call per 16 KiB. Errors are dropped:
/// there is nowhere else to report them.
pub fn write_bytes(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match hypercall::console_write(bytes) {
            Ok(n) if n > 0 => bytes = &bytes[(n as usize).min(bytes.len())..],
            _ => return,
        }
    }
}

/// Writes `s` to the console unbuffered (one `console_io` call per 16 KiB).
pub fn write_str(s: &str) {
    write_bytes(s.as_bytes());
}

/// An unbuffered [`fmt::Write`] handle on the console: each `write_str` is one `console_io`
/// call. Prefer [`print!`](crate::print), which makes one call per print.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Formats `args` and writes the result with as few `console_io` calls as possible (one, for
/// anything up to [`PRINT_BUFFER_SIZE`] bytes). Used by [`print!`](crate::print).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    if let Some(s) = args.as_str() {
        write_str(s);
        return;
    }
    let mut buf = LineBuffer::<PRINT_BUFFER_SIZE>::new();
    let _ = fmt::Write::write_fmt(&mut buf, args);
    buf.flush();
}

/// Prints to the Parapet console with one `console_io` hypercall (for output up to 1 KiB).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::print_fmt(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the Parapet console with one `console_io` hypercall (for lines up to 1 KiB).
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_str("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::print_fmt(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn buffer_collects_formatted_text() {
        let mut b = LineBuffer::<64>::new();
        write!(b, "x={} y={:#x}", 5, 255).unwrap();
        assert_eq!(b.as_bytes(), b"x=5 y=0xff");
    }

    #[test]
    fn overflowing_buffer_flushes_and_keeps_the_tail() {
        // Before boot the flush goes nowhere; what matters is that nothing is lost or overrun.
        let mut b = LineBuffer::<4>::new();
        b.push_bytes(b"abcdefghij");
        assert_eq!(b.as_bytes(), b"ij");
        b.flush();
        assert_eq!(b.as_bytes(), b"");
    }

    #[test]
    fn macros_expand_before_boot() {
        crate::println!("not printed: {}", 1);
        crate::print!("also not printed");
        crate::println!();
    }
}
