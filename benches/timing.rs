//! Placeholder for the timing check.
fn main() {}
