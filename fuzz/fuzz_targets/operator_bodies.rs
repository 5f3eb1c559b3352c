//! Fuzz target `operator_bodies`: the oracle in gateway_render::oracle (no panic, nothing unvalidated rendered).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_render::oracle::run("operator_bodies", data));
