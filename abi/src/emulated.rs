//! Trapped-and-emulated devices (docs/abi.md §9.3): every access exits to the VMM. Parapet's
//! guests do not need them; they are the trap-and-emulate baselines the paravirtual interfaces
//! are measured against, and a last-resort console.

/// Bochs/QEMU-style debug console: `out 0xe9, al` prints one byte.
pub const DEBUG_CONSOLE_PORT: u16 = 0xe9;
/// A scratch register on port I/O: reads return what was last written.
pub const SCRATCH_PORT: u16 = 0x510;
/// A scratch register at this guest-physical (and, by the builder's mapping, virtual) address:
/// an MMIO page no memory slot backs, just above the largest guest RAM. (KVM treats guest-physical
/// addresses beyond the CPU's address width as reserved; 32 GiB is below every width.)
pub const SCRATCH_MMIO: u64 = 32 << 30;
/// Size of the scratch MMIO window.
pub const SCRATCH_MMIO_SIZE: u64 = 4096;
