//! Byte searches a word at a time ("SIMD within a register"): replaying a journal
//! looks at every byte of it for line ends and string ends, and the release build
//! (optimized for size) does not vectorize a byte-by-byte loop.
//!
//! Each search reads 8 bytes as a little-endian u64 and flags the bytes it wants
//! with the classic tests: `x - 0x01…01 & !x & 0x80…80` flags the zero bytes of
//! `x`, and `x - n·0x01…01 & !x & 0x80…80` the bytes below `n` (for `n <= 0x80`).
//! Both can flag a byte wrongly, but only above a byte flagged rightly (a borrow
//! runs upwards), so the lowest flag is always exact, and the lowest is all a
//! search needs.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

// The helpers are small and called once per word: `inline(always)`, because the
// release build optimizes for size and would otherwise call them (and closures)
// out of line, which costs more than the work.

/// Flags (high bit of each byte) the bytes of `x` below `n`; the lowest is exact.
#[inline(always)]
fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS
}

/// Flags the bytes of `x` equal to `b`; the lowest is exact.
#[inline(always)]
fn equal(x: u64, b: u8) -> u64 {
    below(x ^ (ONES * u64::from(b)), 1)
}

/// The 8 bytes of `bytes` at `at`, as a little-endian word.
#[inline(always)]
pub(crate) fn word(bytes: &[u8], at: usize) -> u64 {
    let b = &bytes[at..at + 8];
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The index of the first `\n` or NUL byte.
pub(crate) fn newline_or_nul(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let w = word(bytes, at);
        let f = equal(w, b'\n') | below(w, 1);
        if f != 0 {
            return Some(at + (f.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    while at < bytes.len() {
        if bytes[at] == b'\n' || bytes[at] == 0 {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// The index of the first byte that ends or interrupts a JSON string without
/// escapes: `"`, `\`, or a control character (below 0x20).
pub(crate) fn string_special(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let w = word(bytes, at);
        let f = equal(w, b'"') | equal(w, b'\\') | below(w, 0x20);
        if f != 0 {
            return Some(at + (f.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    while at < bytes.len() {
        let b = bytes[at];
        if b == b'"' || b == b'\\' || b < 0x20 {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_agree_with_a_byte_by_byte_search() {
        let mut rng = crate::rng::XorShift::new(3);
        for _ in 0..5000 {
            let len = rng.below(40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let special = [b'\n', 0, b'"', b'\\', 0x1f, 0x20, 0x8a, 0x80, 0xa2, 0xdc];
                    match rng.below(3) {
                        0 => special[rng.below(special.len() as u64) as usize],
                        _ => rng.next_u64() as u8,
                    }
                })
                .collect();
            let slow = |f: fn(u8) -> bool| bytes.iter().position(|&b| f(b));
            assert_eq!(
                newline_or_nul(&bytes),
                slow(|b| b == b'\n' || b == 0),
                "{bytes:?}"
            );
            assert_eq!(
                string_special(&bytes),
                slow(|b| b == b'"' || b == b'\\' || b < 0x20),
                "{bytes:?}"
            );
        }
    }
}
