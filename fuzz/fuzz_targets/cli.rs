#![no_main]
//! Fuzz target `cli`: see `parapet::fuzzing::cli` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::cli(data));
