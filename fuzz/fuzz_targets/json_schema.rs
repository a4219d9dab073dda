#![no_main]
// See `webhook_guard_fuzz::json_schema` for what is asserted.
libfuzzer_sys::fuzz_target!(|data: &[u8]| webhook_guard_fuzz::json_schema(data));
