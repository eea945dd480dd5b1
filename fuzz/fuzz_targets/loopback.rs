#![no_main]
//! Fuzz target `loopback`: see `parapet::fuzzing::loopback` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::loopback(data));
