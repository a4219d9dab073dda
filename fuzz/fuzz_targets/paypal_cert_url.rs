#![no_main]
// PayPal's certificate-URL check and transmission-time parser on arbitrary
// text: never panics, and believes only the documented URL shape.
libfuzzer_sys::fuzz_target!(|data: &[u8]| webhook_guard_fuzz::paypal_cert_url(data));
