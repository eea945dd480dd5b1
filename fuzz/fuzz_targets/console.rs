#![no_main]
//! Fuzz target `console`: see `parapet::fuzzing::console` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::console(data));
