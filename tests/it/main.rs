//! Integration tests: the real binary against its own simulator.
