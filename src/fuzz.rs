//! Seeded randomized tests: a runner that feeds a parser many generated inputs and,
//! when one fails, says which seed and case reproduce it.
//!
//! `FELHOM_FUZZ_ITERS` sets the number of cases (default [`DEFAULT_ITERS`], small
//! enough for `./build.sh test`; `./build.sh fuzz` runs many more) and
//! `FELHOM_FUZZ_SEED` the seed (default: fixed, so a normal run is reproducible).

use crate::rng::XorShift;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Cases per property in a normal test run.
pub const DEFAULT_ITERS: u64 = 2_000;

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `case` with a generator seeded per case; on a panic, panics again naming the
/// property, the seed and the case number, so `FELHOM_FUZZ_SEED` reruns it.
pub fn cases(property: &str, mut case: impl FnMut(&mut XorShift)) {
    let seed = env_u64("FELHOM_FUZZ_SEED").unwrap_or(0x00fe_1403);
    let iters = env_u64("FELHOM_FUZZ_ITERS").unwrap_or(DEFAULT_ITERS);
    for i in 0..iters {
        let mut rng = XorShift::new(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{property}: case {i} failed (FELHOM_FUZZ_SEED={seed}): {msg}");
        }
    }
}

/// Bytes to try on a parser that expects something like `valid`: `valid` itself or a
/// mutation of it (bit flips, cuts, repeats, inserted delimiters and odd bytes), or
/// noise.
pub fn mutate(rng: &mut XorShift, valid: &[u8]) -> Vec<u8> {
    const ODD: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"\n",
        b"\0",
        b"\xff",
        b"\xc3",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"null",
        b"true",
        b"\"\\u0000\"",
        b"%",
    ];
    let mut out = valid.to_vec();
    if rng.below(20) == 0 {
        return (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect();
    }
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() as u64 + 1) as usize;
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(at),
            2 => {
                let end = (at + rng.below(8) as usize).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let piece = ODD[rng.below(ODD.len() as u64) as usize];
                out.splice(at..at, piece.iter().copied());
            }
            4 => {
                let end = (at + rng.below(16) as usize).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            _ => out.insert(at, rng.next_u64() as u8),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_reproducible_and_vary() {
        let mut a = XorShift::new(9);
        let mut b = XorShift::new(9);
        let valid = br#"{"v":1,"seq":2}"#;
        let xs: Vec<Vec<u8>> = (0..50).map(|_| mutate(&mut a, valid)).collect();
        let ys: Vec<Vec<u8>> = (0..50).map(|_| mutate(&mut b, valid)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().filter(|x| x.as_slice() != valid).count() > 40);
    }

    #[test]
    fn a_failing_case_names_its_seed() {
        let r = catch_unwind(|| cases("always fails", |_| panic!("boom")));
        let msg = r.unwrap_err().downcast_ref::<String>().cloned().unwrap();
        assert!(
            msg.contains("FELHOM_FUZZ_SEED=") && msg.contains("boom"),
            "{msg}"
        );
    }
}
