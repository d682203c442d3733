//! The context parser takes labels read from files a container controls: it must never
//! panic, and whatever it accepts must render to a canonical form that parses back to the
//! same context and renders identically (a fixed point, so a label once written is never
//! rewritten).
#![no_main]

use libfuzzer_sys::fuzz_target;
use volsec_core::selinux::{mount_option, Context, MlsRange};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(range) = MlsRange::parse(text) {
        let canonical = range.to_string();
        let again = MlsRange::parse(&canonical).expect("a rendered range parses");
        assert_eq!(again, range);
        assert_eq!(again.to_string(), canonical);
    }
    let Ok(ctx) = Context::parse(text) else {
        return;
    };
    let canonical = ctx.to_string();
    let again = Context::parse(&canonical).expect("a rendered context parses");
    assert_eq!(again, ctx);
    assert_eq!(again.to_string(), canonical);
    assert_eq!(mount_option(&ctx), format!("context=\"{canonical}\""));
    assert!(!canonical.contains(['"', ' ', '\0', '\n']));
});
