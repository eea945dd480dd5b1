//! The pv-ops: interrupt flag and mode through the VIF byte.

use super::*;

pub(super) fn pv_ops(c: &mut Checks) {
    let vif = pvops::irq_mode() == IrqMode::Vif;
    pvops::irq_disable();
    c.that(
        "pvops irq_disable",
        !pvops::irqs_enabled(),
        "enabled",
        "disabled",
    );
    if vif {
        c.eq(
            "pvops VIF byte after disable",
            Flag(pvops::vif_flag()),
            Flag(Some(0)),
        );
    }
    pvops::irq_enable();
    c.that(
        "pvops irq_enable",
        pvops::irqs_enabled(),
        "disabled",
        "enabled",
    );
    if vif {
        c.eq(
            "pvops VIF byte after enable",
            Flag(pvops::vif_flag()),
            Flag(Some(1)),
        );
    }
    {
        let _guard = pvops::irq_save();
        c.that(
            "pvops irq_save masks",
            !pvops::irqs_enabled(),
            "enabled",
            "disabled",
        );
    }
    c.that(
        "pvops irq_save guard restores",
        pvops::irqs_enabled(),
        "disabled",
        "enabled",
    );
    pvops::irq_disable();
    c.that(
        "pvops irq_disable again",
        !pvops::irqs_enabled(),
        "enabled",
        "disabled",
    );
    // The SDK runs `main` with events enabled; leave it so.
    pvops::irq_enable();
}
