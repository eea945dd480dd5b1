//! Hypercall error codes: Xen's `errno.h` values (which equal Linux's), returned negated in RAX.

/// An error code returned by a hypercall. The hypercall returns `-code` in RAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such entry.
    pub const ENOENT: Errno = Errno(2);
    /// Argument list (or batch) too long.
    pub const E2BIG: Errno = Errno(7);
    /// Try again.
    pub const EAGAIN: Errno = Errno(11);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Bad address: a guest-physical range outside guest RAM.
    pub const EFAULT: Errno = Errno(14);
    /// Resource busy.
    pub const EBUSY: Errno = Errno(16);
    /// Already exists (e.g. a VIRQ that is already bound).
    pub const EEXIST: Errno = Errno(17);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// No space left (e.g. no free event channel port).
    pub const ENOSPC: Errno = Errno(28);
    /// Function not implemented: unknown hypercall or sub-operation.
    pub const ENOSYS: Errno = Errno(38);

    /// The value a hypercall leaves in RAX for this error.
    pub const fn to_ret(self) -> u64 {
        (-(self.0 as i64)) as u64
    }

    /// Splits a raw RAX value into a success value or an error. Values in `-4095..=-1` are errors,
    /// as in Xen and Linux.
    pub const fn from_ret(ret: u64) -> Result<u64, Errno> {
        let signed = ret as i64;
        if signed < 0 && signed >= -4095 {
            Err(Errno(-signed as i32))
        } else {
            Ok(ret)
        }
    }

    /// The symbolic name, for logs.
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            7 => "E2BIG",
            11 => "EAGAIN",
            12 => "ENOMEM",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            _ => "E?",
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Errno;

    #[test]
    fn round_trips_through_rax() {
        assert_eq!(Errno::from_ret(Errno::ENOSYS.to_ret()), Err(Errno::ENOSYS));
        assert_eq!(Errno::ENOSYS.to_ret() as i64, -38);
        assert_eq!(Errno::from_ret(0), Ok(0));
        assert_eq!(Errno::from_ret(u64::MAX - 5000), Ok(u64::MAX - 5000));
    }
}
