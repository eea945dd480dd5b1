#![no_main]
//! Fuzz target `netif`: see `parapet::fuzzing::netif` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::netif(data));
