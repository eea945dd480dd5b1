#![no_main]
//! Fuzz target `grants`: see `parapet::fuzzing::grants` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::grants(data));
