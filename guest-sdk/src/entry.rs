//! Kernel entry: from the VMM's jump to `_start` to the guest's `main` and back to power-off.
//!
//! The boot protocol (docs/abi.md §2.3) enters `_start` in 64-bit mode with RSI = the start-info
//! page and no stack. `_start` (a naked function, first in `.text`):
//!
//! 1. points RSP at `__stack_top` (the linker script's boot stack),
//! 2. zeroes `.bss`,
//! 3. calls `boot` with the start-info address.
//!
//! `boot` checks the start-info magic, finds the hypercall page, the VIF page and the PV clock,
//! installs the IDT (with the event-channel upcall gate), unmaps the stack guard page
//! ([`paging`](crate::paging)), finds the shared-info page and the grant table, starts the
//! logger (level from `loglevel=` on the command line, default `info`), gives the heap the
//! largest usable memory region, starts the console ring (unmasking the console port), and then
//! enables event delivery: it clears `evtchn_upcall_mask` and unmasks interrupts (VIF byte 1 on
//! kvm_pvm, `sti` elsewhere). Then it calls the guest's `fn main() -> u32` (named with
//! [`entry!`](crate::entry!)), with events enabled. When `main` returns, the console ring is
//! drained and the domain is powered off with its return value as the exit code.
//!
//! Nothing in this sequence exits to the VMM: a guest whose `main` prints one line makes exactly
//! one hypercall that exits, the power-off (the print goes into the console ring and rings the
//! doorbell, which the VMM's ioeventfd absorbs in the kernel).
//!
//! If the start-info magic is wrong nothing can be trusted, not even the hypercall page, so the
//! guest executes `ud2` with no IDT loaded: a triple fault, which the VMM reports.

/// Names the guest's entry function, `fn() -> u32`, whose return value becomes the exit code.
///
/// For a guest kernel (`target_os = "none"`) this exports the function to the SDK's `_start`.
/// For any other target it defines the program's C `main` (the crate must be `#![no_main]`),
/// which says how to run the guest and exits with status 1:
///
/// ```ignore
/// #![cfg_attr(target_os = "none", no_std)]
/// #![no_main]
///
/// guest_sdk::entry!(main);
///
/// fn main() -> u32 {
///     guest_sdk::println!("hi");
///     0
/// }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The guest's entry point, called by the SDK's boot code.
        #[cfg(target_os = "none")]
        #[unsafe(export_name = "__parapet_guest_main")]
        pub extern "Rust" fn __parapet_guest_main() -> u32 {
            let main: fn() -> u32 = $main;
            main()
        }

        /// On the host this binary only explains itself.
        #[cfg(not(target_os = "none"))]
        #[unsafe(export_name = "main")]
        pub extern "C" fn __parapet_host_main(_argc: i32, _argv: *const *const u8) -> i32 {
            let _guest_main: fn() -> u32 = $main;
            let name = env!("CARGO_BIN_NAME");
            ::std::eprintln!(
                "`{name}` is a Parapet guest kernel, not a host program: build it with \
                 `--target x86_64-unknown-none` and boot it with `parapet run` (in the Parapet \
                 repository: `cargo xtask run-guest {name}`)"
            );
            1
        }
    };
}

#[cfg(target_os = "none")]
mod kernel {
    use parapet_abi::start_info::StartInfo;

    use crate::{
        console, event_channel, grant_table, heap, hypercall, idt, logger, paging, panic, pvops,
        start_info, time,
    };

    unsafe extern "Rust" {
        /// Defined by the guest binary through `entry!`.
        safe fn __parapet_guest_main() -> u32;
    }

    /// The ELF entry point. RSI = start-info page; RSP is not valid yet.
    #[unsafe(naked)]
    #[unsafe(no_mangle)]
    #[unsafe(link_section = ".text.entry")]
    unsafe extern "C" fn _start() -> ! {
        core::arch::naked_asm!(
            "lea rsp, [rip + __stack_top]",
            "xor ebp, ebp",
            "mov r12, rsi",
            // Zero .bss (the VMM zeroes p_memsz beyond p_filesz too; this makes it not matter).
            "lea rdi, [rip + __bss_start]",
            "lea rcx, [rip + __bss_end]",
            "sub rcx, rdi",
            "xor eax, eax",
            "cld",
            "rep stosb",
            "mov rdi, r12",
            "call {boot}",
            "ud2",
            boot = sym boot,
        )
    }

    /// Brings the SDK up and runs the guest's `main`. See the module documentation.
    extern "C" fn boot(page: *const StartInfo) -> ! {
        if start_info::check_pointer(page).is_err() {
            triple_fault();
        }
        // SAFETY: `page` is RSI at entry, non-null and aligned (checked above): the start-info
        // page the VMM mapped read-only for the guest's whole life and never changes after boot.
        let info: &'static StartInfo = unsafe { &*page };
        let info = match start_info::init(info) {
            Ok(info) => info,
            Err(_) => triple_fault(),
        };
        hypercall::init(info);
        if let Err(e) = start_info::validate(info) {
            crate::println!("parapet guest: bad start-info page: {e}");
            panic::crash();
        }
        pvops::init(info);
        time::init(info);
        idt::install(info);
        let guarded = paging::unmap_stack_guard(info);
        event_channel::init();
        grant_table::init();
        let level = logger::level_from_cmdline(start_info::cmdline());
        logger::init(level.unwrap_or(logger::DEFAULT_LEVEL));
        heap::init(info);
        console::init(info);
        if idt::upcall_vector() != 0 {
            event_channel::enable_upcalls();
            pvops::irq_enable();
        } else {
            log::warn!(target: "parapet::boot", "no upcall vector: event delivery stays off");
        }
        log::debug!(
            target: "parapet::boot",
            "platform {} transport {} cmdline {:?}",
            start_info::platform().name(),
            start_info::transport().name(),
            start_info::cmdline()
        );
        if !guarded {
            log::warn!(target: "parapet::boot", "no stack guard page: the kernel is too large");
        }
        let code = __parapet_guest_main();
        pvops::poweroff(code)
    }

    /// Stops a guest that cannot even trust its hypercall page: `ud2` with no IDT loaded is a
    /// triple fault, which the VMM reports.
    fn triple_fault() -> ! {
        loop {
            // SAFETY: raising #UD is the intent; nothing is loaded in the IDT yet.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
        }
    }
}
