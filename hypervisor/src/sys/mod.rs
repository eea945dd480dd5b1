//! The system calls std does not offer, one module per concern, through `rustix` and
//! `vmm-sys-util` where they have them. The VMM's `unsafe` system calls live here and in `kvm/`.

mod file;
mod poll;
mod process;
mod sigsys;
mod snapshot_signal;
mod tap;
mod terminal;
mod thread;

pub use file::{VectoredDir, punch_hole, rw_vectored, try_lock};
pub use poll::poll;
pub use process::{defer_vm_teardown, exit_now};
pub use sigsys::{forbidden_system_call, install_sigsys_reporter, set_sigsys_label};
pub use snapshot_signal::{kick_on_snapshot_signal, on_snapshot_signal, take_snapshot_request};
pub use tap::{TapInfo, claim_tap, open_tap, tap_info};
pub use terminal::{ignore_terminal_stops, read_stdin, stdin_in_background};
pub use thread::{current_thread, rdtsc, set_timer_slack_ns, signal_thread};
