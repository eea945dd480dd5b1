//! `multicall` (13): many hypercalls, one exit (docs/abi.md §3.9).

use super::{Action, Context, dispatch};
use parapet_abi::Errno;
use parapet_abi::hypercall::Hypercall;
use parapet_abi::multicall::{MULTICALL_MAX_ENTRIES, MulticallEntry};
use vm_memory::GuestAddress;
use zerocopy::FromZeros;

/// Offset of `result` inside an entry.
const RESULT_OFFSET: u64 = core::mem::offset_of!(MulticallEntry, result) as u64;
const ENTRY_SIZE: u64 = size_of::<MulticallEntry>() as u64;

pub(super) fn multicall(ctx: &mut Context<'_>, [list, count, ..]: [u64; 5]) -> Action {
    if count > MULTICALL_MAX_ENTRIES {
        return Action::Return(Errno::E2BIG.to_ret());
    }
    // Copy the whole batch once; the guest may rewrite its copy while we run the calls.
    let mut entries = vec![MulticallEntry::new_zeroed(); count as usize];
    if let Err(e) = ctx.ram.read(
        GuestAddress(list),
        zerocopy::IntoBytes::as_mut_bytes(entries.as_mut_slice()),
    ) {
        return Action::Return(e.to_ret());
    }
    // Every result slot must be writable before any entry runs: `-EFAULT` means no entry ran.
    // (The guest's protected pages never change after the build, so the writes below succeed.)
    for i in 0..count {
        if let Err(e) = ctx
            .ram
            .check_writable(GuestAddress(list + i * ENTRY_SIZE + RESULT_OFFSET), 8)
        {
            return Action::Return(e.to_ret());
        }
    }
    for (i, entry) in entries.iter().enumerate() {
        let action = if entry.op == u64::from(Hypercall::MULTICALL.0) {
            Action::Return(Errno::EINVAL.to_ret())
        } else {
            let a = entry.args;
            dispatch(ctx, entry.op, [a[0], a[1], a[2], a[3], a[4]])
        };
        match action {
            Action::Return(result) => {
                let at = list + i as u64 * ENTRY_SIZE + RESULT_OFFSET;
                // The array was inside RAM when copied and RAM does not shrink.
                if let Err(e) = ctx.ram.write_obj(GuestAddress(at), &result) {
                    return Action::Return(e.to_ret());
                }
            }
            stop @ Action::Stop(_) => return stop,
            // Halting in the middle of a batch has no sensible meaning.
            Action::Block => {
                let at = list + i as u64 * ENTRY_SIZE + RESULT_OFFSET;
                if let Err(e) = ctx.ram.write_obj(GuestAddress(at), &Errno::EINVAL.to_ret()) {
                    return Action::Return(e.to_ret());
                }
            }
        }
    }
    Action::Return(0)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ret, with_context};
    use super::*;
    use parapet_abi::version::XENVER_VERSION;
    use zerocopy::FromBytes;

    fn entry(op: Hypercall, args: [u64; 6]) -> MulticallEntry {
        MulticallEntry {
            op: op.0.into(),
            result: 0xdead,
            args,
        }
    }

    #[test]
    fn runs_each_entry_and_writes_only_results() {
        with_context(|ctx| {
            let batch = [
                entry(Hypercall::XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0, 0]),
                entry(Hypercall(99), [0; 6]),
                entry(Hypercall::MULTICALL, [0x1000, 1, 0, 0, 0, 0]),
            ];
            ctx.ram
                .write(
                    GuestAddress(0x1000),
                    zerocopy::IntoBytes::as_bytes(&batch[..]),
                )
                .unwrap();
            assert_eq!(ret(multicall(ctx, [0x1000, 3, 0, 0, 0])), 0);
            let mut back = [0u8; 192];
            ctx.ram.read(GuestAddress(0x1000), &mut back).unwrap();
            let back = <[MulticallEntry]>::ref_from_bytes(&back[..]).unwrap();
            assert_eq!(back[0].result, 2);
            assert_eq!(back[1].result, Errno::ENOSYS.to_ret());
            assert_eq!(back[2].result, Errno::EINVAL.to_ret());
            assert_eq!(back[1].args, [0; 6]);
        });
    }

    #[test]
    fn refuses_oversized_or_unreadable_batches() {
        with_context(|ctx| {
            assert_eq!(ret(multicall(ctx, [0x1000, 0, 0, 0, 0])), 0);
            assert_eq!(
                ret(multicall(ctx, [0x1000, 257, 0, 0, 0])),
                Errno::E2BIG.to_ret()
            );
            assert_eq!(
                ret(multicall(ctx, [0x1000, u64::MAX, 0, 0, 0])),
                Errno::E2BIG.to_ret()
            );
            assert_eq!(
                ret(multicall(ctx, [(4 << 20) - 64, 2, 0, 0, 0])),
                Errno::EFAULT.to_ret()
            );
        });
    }

    #[test]
    fn a_batch_whose_results_cannot_be_written_runs_no_entry() {
        let ((), printed) = with_context(|ctx| {
            // The second entry's result slot lies in a page the guest may not write.
            let base = 0x10_0000 - 64;
            ctx.ram.write(GuestAddress(0x2000), b"MARK").unwrap();
            let batch = [
                entry(Hypercall::CONSOLE_IO, [0, 4, 0x2000, 0, 0, 0]),
                entry(Hypercall::XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0, 0]),
            ];
            ctx.ram
                .write(
                    GuestAddress(base),
                    zerocopy::IntoBytes::as_bytes(&batch[..]),
                )
                .unwrap();
            ctx.ram.protect(vec![0x10_0000..0x10_1000, 0..0x1000]);
            assert_eq!(
                ret(multicall(ctx, [base, 2, 0, 0, 0])),
                Errno::EFAULT.to_ret()
            );
            assert_eq!(
                ctx.ram
                    .read_obj::<MulticallEntry>(GuestAddress(base))
                    .unwrap()
                    .result,
                0xdead,
                "the first entry's result is untouched"
            );
        });
        assert!(printed.is_empty(), "the first entry did not run");
    }
}
