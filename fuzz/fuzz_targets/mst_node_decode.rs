//! libFuzzer target: see `atbox::fuzz_targets::mst_node_decode` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atbox::fuzz_targets::mst_node_decode(data));
