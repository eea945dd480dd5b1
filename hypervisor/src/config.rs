//! What the user asked for: the VM configuration, independent of the CLI that produced it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// How hypercalls should reach the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// The fastest transport this host offers.
    Auto,
    /// VMCALL/VMMCALL through KVM's Xen hypercall intercept.
    Vmcall,
    /// Port I/O.
    Pio,
}

/// A configuration for one guest run.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Path of the guest ELF.
    pub kernel: PathBuf,
    /// Guest RAM.
    pub memory: MemSize,
    /// Guest command line.
    pub cmdline: String,
    /// Stop the guest after this long.
    pub timeout: Option<Duration>,
    /// Print statistics at exit.
    pub stats: bool,
    /// Hypercall transport.
    pub transport: TransportChoice,
    /// Give the guest a loopback test device.
    pub loopback: bool,
}

/// A memory size given as bytes or with a K/M/G suffix (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSize(pub u64);

impl MemSize {
    /// Size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for MemSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (digits, shift) = match s.as_bytes().last().map(u8::to_ascii_uppercase) {
            Some(b'K') => (&s[..s.len() - 1], 10),
            Some(b'M') => (&s[..s.len() - 1], 20),
            Some(b'G') => (&s[..s.len() - 1], 30),
            Some(b'T') => (&s[..s.len() - 1], 40),
            _ => (s, 0),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size (try 64M or 1G)"))?;
        n.checked_mul(1u64 << shift)
            .map(MemSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            write!(f, "{} GiB", b >> 30)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{} KiB", b >> 10)
        } else {
            write!(f, "{b} bytes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MemSize;

    #[test]
    fn parses_suffixes() {
        assert_eq!("64M".parse(), Ok(MemSize(64 << 20)));
        assert_eq!("1g".parse(), Ok(MemSize(1 << 30)));
        assert_eq!("512K".parse(), Ok(MemSize(512 << 10)));
        assert_eq!("4096".parse(), Ok(MemSize(4096)));
        assert!("abc".parse::<MemSize>().is_err());
        assert!("".parse::<MemSize>().is_err());
        assert!("-1M".parse::<MemSize>().is_err());
        assert!("99999999999T".parse::<MemSize>().is_err());
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(MemSize(64 << 20).to_string(), "64 MiB");
        assert_eq!(MemSize(3 << 30).to_string(), "3 GiB");
        assert_eq!(MemSize(1000).to_string(), "1000 bytes");
    }
}
