//! Fuzz target `routes_json`: the oracle in gateway_render::oracle (no panic, nothing unvalidated rendered).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_render::oracle::run("routes_json", data));
