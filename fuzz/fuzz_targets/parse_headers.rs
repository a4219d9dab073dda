#![no_main]
// Every scheme's header parser on arbitrary `name: value` lines: never
// panics. The first byte picks the scheme, the rest is the header block.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&pick, block)) = data.split_first() {
        webhook_guard_fuzz::parse_headers(webhook_guard_fuzz::schemes::pick(pick), block);
    }
});
