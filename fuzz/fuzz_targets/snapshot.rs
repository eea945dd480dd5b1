#![no_main]
//! Fuzz target `snapshot`: see `parapet::fuzzing::snapshot` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::snapshot(data));
