//! The Redis dedupe store (feature `redis`). Placeholder being written.
