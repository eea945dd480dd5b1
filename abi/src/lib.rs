//! The Parapet guest/hypervisor ABI.
//!
//! Everything a guest kernel and the Parapet VMM must agree on lives in this crate, once:
//! hypercall numbers and their sub-operations, error codes, and the layout of every structure
//! shared through guest memory. Both sides depend on it; no structure is defined twice.
//!
//! The ABI follows Xen's x86_64 PV conventions where the operation is Xen's (numbers, register
//! convention, `shared_info`, `vcpu_time_info`, the hypercall page) and says so where Parapet
//! extends or departs from them. `docs/abi.md` is the normative description.
//!
//! # Register convention
//!
//! A hypercall is a `call` into the [hypercall page](hypercall) at `page + nr * 32` with the
//! hypercall number in RAX, up to five arguments in RDI, RSI, RDX, R10 and R8, and the result in
//! RAX: a non-negative value on success or a negated [`Errno`] on failure. RCX and R11 may be
//! clobbered by the stub; every other register is preserved.
//!
//! # Addresses
//!
//! Every address passed in a hypercall argument or stored in a shared structure is a
//! guest-physical address (GPA). The domain builder maps all guest RAM 1:1 (virtual address ==
//! physical address), so a pointer to any object in the guest kernel is its GPA.
#![no_std]
#![deny(missing_docs)]

pub mod blkif;
pub mod console;
pub mod device;
pub mod emulated;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hypercall;
pub mod loopback;
pub mod multicall;
pub mod netif;
pub mod ring;
pub mod sched;
pub mod shared_info;
pub mod start_info;
pub mod time;
pub mod version;

pub use errno::Errno;
pub use hypercall::Hypercall;
