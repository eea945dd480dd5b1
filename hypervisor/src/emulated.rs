//! Devices emulated by trapping: each guest access is an exit to the VMM. Parapet's guests do
//! not need them — the paravirtual interfaces replace them — but they are the baseline those
//! interfaces are measured against, and a last-resort console (docs/abi.md §9.3).

use crate::guest_console::ConsoleSink;
use crate::kvm::vcpu::IoBus;

pub use parapet_abi::emulated::{DEBUG_CONSOLE_PORT, SCRATCH_MMIO, SCRATCH_PORT};

/// Parapet's emulated devices: the debug console and the scratch registers.
#[derive(Debug)]
pub struct EmulatedDevices<'a> {
    console: &'a mut dyn ConsoleSink,
    scratch_pio: u64,
    scratch_mmio: u64,
}

impl<'a> EmulatedDevices<'a> {
    /// Devices printing to `console`.
    pub fn new(console: &'a mut dyn ConsoleSink) -> Self {
        EmulatedDevices {
            console,
            scratch_pio: 0,
            scratch_mmio: 0,
        }
    }
}

/// Little-endian load of up to 8 bytes into a register.
fn store(register: &mut u64, data: &[u8]) {
    let mut bytes = register.to_le_bytes();
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    *register = u64::from_le_bytes(bytes);
}

fn load(register: u64, data: &mut [u8]) {
    let bytes = register.to_le_bytes();
    let n = data.len().min(8);
    data[..n].copy_from_slice(&bytes[..n]);
}

impl IoBus for EmulatedDevices<'_> {
    fn pio_read(&mut self, port: u16, data: &mut [u8]) -> bool {
        match port {
            SCRATCH_PORT => load(self.scratch_pio, data),
            _ => return false,
        }
        true
    }

    fn pio_write(&mut self, port: u16, data: &[u8]) -> bool {
        match port {
            DEBUG_CONSOLE_PORT => {
                let _ = self.console.write_console(data);
            }
            SCRATCH_PORT => store(&mut self.scratch_pio, data),
            _ => return false,
        }
        true
    }

    fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) -> bool {
        if gpa != SCRATCH_MMIO {
            return false;
        }
        load(self.scratch_mmio, data);
        true
    }

    fn mmio_write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if gpa != SCRATCH_MMIO {
            return false;
        }
        store(&mut self.scratch_mmio, data);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::testing::Captured;

    #[test]
    fn scratch_registers_remember_and_the_console_prints() {
        let mut out = Captured::default();
        {
            let mut bus = EmulatedDevices::new(&mut out);
            assert!(bus.pio_write(SCRATCH_PORT, &0xdead_beef_u32.to_le_bytes()));
            let mut b = [0u8; 4];
            assert!(bus.pio_read(SCRATCH_PORT, &mut b));
            assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
            assert!(bus.mmio_write(SCRATCH_MMIO, &7u64.to_le_bytes()));
            let mut m = [0u8; 8];
            assert!(bus.mmio_read(SCRATCH_MMIO, &mut m));
            assert_eq!(u64::from_le_bytes(m), 7);
            assert!(!bus.pio_read(0x1234, &mut b));
            assert!(!bus.mmio_write(SCRATCH_MMIO + 8, &[1]));
            assert!(bus.pio_write(DEBUG_CONSOLE_PORT, b"x"));
        }
        assert_eq!(out.0, b"x");
    }
}
