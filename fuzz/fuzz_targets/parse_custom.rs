#![no_main]
// Header parser of the custom scheme on arbitrary `name: value` lines: never panics.
libfuzzer_sys::fuzz_target!(|data: &[u8]| webhook_guard_fuzz::parse_headers(
    webhook_guard_fuzz::schemes::custom(),
    data
));
