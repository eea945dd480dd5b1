#![no_main]
//! Fuzz target `hypercalls`: see `parapet::fuzzing::hypercalls` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::hypercalls(data));
