//! Guest RAM: one anonymous mapping registered with KVM, and bounds-checked access to it.
//!
//! Every access whose address comes from the guest goes through [`GuestRam::read`] or
//! [`GuestRam::write`], which refuse any range not wholly inside RAM with `EFAULT` (overflow
//! included). Reads copy into VMM memory, so a value is validated after it has been copied and
//! cannot change under the check.

use parapet_abi::Errno;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The guest's RAM, GPA 0 up to [`GuestRam::size`].
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    size: u64,
}

impl GuestRam {
    /// Maps `size` bytes of zeroed guest RAM.
    pub fn new(size: u64) -> std::io::Result<GuestRam> {
        let len = usize::try_from(size).map_err(std::io::Error::other)?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)])
            .map_err(std::io::Error::other)?;
        Ok(GuestRam { mem, size })
    }

    /// RAM size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The host virtual address of GPA 0 (RAM is one contiguous mapping).
    pub fn host_base(&self) -> u64 {
        let region = self.mem.iter().next().expect("guest RAM has one region");
        debug_assert_eq!(region.start_addr(), GuestAddress(0));
        self.mem
            .get_host_address(GuestAddress(0))
            .expect("GPA 0 is inside guest RAM") as u64
    }

    /// Checks that `[gpa, gpa + len)` lies inside RAM.
    pub fn check_range(&self, gpa: u64, len: u64) -> Result<(), Errno> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }

    /// Copies `buf.len()` bytes from guest RAM at `gpa`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check_range(gpa, buf.len() as u64)?;
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| Errno::EFAULT)
    }

    /// Copies `buf` into guest RAM at `gpa`.
    pub fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), Errno> {
        self.check_range(gpa, buf.len() as u64)?;
        self.mem
            .write_slice(buf, GuestAddress(gpa))
            .map_err(|_| Errno::EFAULT)
    }

    /// Copies a `T` out of guest RAM.
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, gpa: u64) -> Result<T, Errno> {
        let mut value = T::new_zeroed();
        self.read(gpa, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Copies a `T` into guest RAM.
    pub fn write_obj<T: IntoBytes + Immutable>(&self, gpa: u64, value: &T) -> Result<(), Errno> {
        self.write(gpa, value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_ranges_outside_ram() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(ram.read((1 << 20) - 16, &mut buf), Ok(()));
        assert_eq!(ram.read((1 << 20) - 15, &mut buf), Err(Errno::EFAULT));
        assert_eq!(ram.read(u64::MAX - 4, &mut buf), Err(Errno::EFAULT));
        assert_eq!(ram.write(1 << 20, &[1]), Err(Errno::EFAULT));
        assert_eq!(ram.read(0, &mut []), Ok(()));
    }

    #[test]
    fn round_trips_objects() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_obj(0x1000, &0xdead_beef_u64).unwrap();
        assert_eq!(ram.read_obj::<u64>(0x1000), Ok(0xdead_beef));
    }
}
