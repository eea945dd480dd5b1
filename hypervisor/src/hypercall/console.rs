//! `console_io` (18): the early and emergency console (docs/abi.md §3.5).

use super::{Action, Context};
use parapet_abi::Errno;
use parapet_abi::console::{CONSOLEIO_READ, CONSOLEIO_WRITE, CONSOLEIO_WRITE_MAX};
use vm_memory::GuestAddress;

pub(super) fn console_io(ctx: &mut Context<'_>, [cmd, count, buf, ..]: [u64; 5]) -> Action {
    match cmd {
        CONSOLEIO_WRITE => write(ctx, count.min(CONSOLEIO_WRITE_MAX), buf).into(),
        // Console input arrives through the console ring; the buffer is still validated so a
        // guest learns about a bad pointer.
        CONSOLEIO_READ => ctx
            .ram
            .check_range(GuestAddress(buf), count)
            .map(|()| 0)
            .into(),
        _ => Action::Return(Errno::ENOSYS.to_ret()),
    }
}

fn write(ctx: &mut Context<'_>, count: u64, buf: u64) -> Result<u64, Errno> {
    let mut bytes = vec![0u8; count as usize];
    ctx.ram.read(GuestAddress(buf), &mut bytes)?;
    if let Err(e) = ctx.console.write_console(&bytes) {
        // The user closed our stdout: the output is lost, but that is no reason to stop the guest.
        tracing::debug!("console output dropped: {e}");
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ret, with_context};
    use super::*;

    #[test]
    fn writes_what_the_guest_names_and_refuses_bad_buffers() {
        let ((), out) = with_context(|ctx| {
            ctx.ram.write(GuestAddress(0x1000), b"hello").unwrap();
            assert_eq!(ret(console_io(ctx, [CONSOLEIO_WRITE, 5, 0x1000, 0, 0])), 5);
            assert_eq!(ret(console_io(ctx, [CONSOLEIO_WRITE, 0, 0x1000, 0, 0])), 0);
            let efault = Errno::EFAULT.to_ret();
            assert_eq!(
                ret(console_io(ctx, [CONSOLEIO_WRITE, 16, (4 << 20) - 8, 0, 0])),
                efault
            );
            assert_eq!(
                ret(console_io(ctx, [CONSOLEIO_WRITE, 16, u64::MAX - 4, 0, 0])),
                efault
            );
            assert_eq!(
                ret(console_io(ctx, [7, 1, 0x1000, 0, 0])),
                Errno::ENOSYS.to_ret()
            );
            assert_eq!(ret(console_io(ctx, [CONSOLEIO_READ, 16, 0x1000, 0, 0])), 0);
            // A huge count is clamped, not allocated.
            assert_eq!(
                ret(console_io(ctx, [CONSOLEIO_WRITE, u64::MAX, 0x1000, 0, 0])),
                CONSOLEIO_WRITE_MAX
            );
        });
        assert!(out.starts_with(b"hello"));
        assert_eq!(out.len(), 5 + CONSOLEIO_WRITE_MAX as usize);
    }
}
