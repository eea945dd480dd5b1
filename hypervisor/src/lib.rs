//! Parapet: a Xen-style paravirtualization hypervisor on Linux KVM.
//!
//! The VMM loads a guest ELF, builds its initial state the way Xen's domain builder does
//! ([`builder`]), runs its vCPU ([`kvm`]) and serves its hypercalls ([`hypercall`]). See
//! `docs/architecture.md` for the big picture and `docs/abi.md` for the guest ABI.

pub mod backends;
pub mod builder;
pub mod config;
pub mod debug;
pub mod devices;
pub mod disk;
pub mod domain;
pub mod emulated;
pub mod error;
pub mod events;
pub mod fuzzing;
pub mod grants;
pub mod hypercall;
pub mod kvm;
pub mod loader;
pub mod memory;
pub mod outcome;
pub mod page_walk;
pub mod platform;
pub mod seccomp;
pub mod stats;
pub mod symbols;
pub mod sys;
pub mod tap;
pub mod timer;
pub mod vcpu_loop;
pub mod vmm;

pub use config::VmConfig;
pub use error::{Error, Result};
