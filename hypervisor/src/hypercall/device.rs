//! `device_op` (64): connecting split-driver frontends (docs/abi.md §10).

use super::{Action, Context};
use parapet_abi::Errno;
use parapet_abi::device::{Connect, DEVOP_CONNECT, DEVOP_DISCONNECT};
use vm_memory::GuestAddress;

pub(super) fn device_op(ctx: &mut Context<'_>, [cmd, arg, ..]: [u64; 5]) -> Action {
    let devices = ctx.dom.devices();
    let result = match cmd {
        DEVOP_CONNECT => ctx
            .ram
            .read_obj::<Connect>(GuestAddress(arg))
            .and_then(|req| {
                let device = devices.get(req.device as usize).ok_or(Errno::ENOENT)?;
                device.connect(&ctx.dom.backend_link(), &req)
            }),
        DEVOP_DISCONNECT => usize::try_from(arg)
            .ok()
            .and_then(|i| devices.get(i))
            .ok_or(Errno::ENOENT)
            .and_then(|d| d.disconnect()),
        _ => Err(Errno::ENOSYS),
    };
    result.map(|()| 0).into()
}
