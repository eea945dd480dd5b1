//! Parapet: a Xen-style paravirtualization hypervisor on Linux KVM.
//!
//! The VMM loads a guest ELF, builds its initial state the way Xen's domain builder does
//! (`builder`), runs its vCPU (`kvm`) and serves its hypercalls (`hypercall`). See
//! `docs/architecture.md` for the big picture and `docs/abi.md` for the guest ABI.

pub(crate) mod builder;
pub mod config;
pub(crate) mod control;
pub(crate) mod debug;
pub(crate) mod devices;
pub(crate) mod domain;
pub(crate) mod emulated;
pub mod error;
pub(crate) mod event_channel;
pub mod fuzzing;
pub(crate) mod grant_table;
pub(crate) mod guest_console;
pub(crate) mod hypercall;
pub(crate) mod kvm;
pub(crate) mod layout;
pub(crate) mod loader;
pub(crate) mod memory;
pub mod outcome;
pub(crate) mod page_walk;
pub(crate) mod platform;
pub(crate) mod restore;
pub(crate) mod seccomp;
pub(crate) mod snapshot;
pub(crate) mod stats;
pub(crate) mod symbols;
pub(crate) mod sys;
pub(crate) mod timer;
pub(crate) mod vcpu_loop;
pub mod vmm;

pub use config::VmConfig;
pub use error::{Error, Result};
