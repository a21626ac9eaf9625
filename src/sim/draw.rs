//! Reproducible draws for the simulator: a stable hash of a call ID and well-mixed bits from
//! it, shared by the answers (`answer.rs`) and the faults (`faults.rs`).

/// FNV-1a 64: tiny, stable across Rust versions and platforms (unlike `DefaultHasher`), so
/// the answers never change under a test's feet.
pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One step of the splitmix64 generator.
pub(super) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64 as a hash: well-mixed bits from any input, even consecutive counters.
pub(super) fn mix(x: u64) -> u64 {
    let mut state = x;
    splitmix64(&mut state)
}

/// Maps well-mixed bits to [0, 1), using the top 53 bits (all an `f64` can hold).
pub(super) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
