//! libFuzzer target: see `atbox::fuzz_targets::json_body` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atbox::fuzz_targets::json_body(data));
