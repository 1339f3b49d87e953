//! Data parallelism over index ranges. The threaded wasm build (feature `threads`) runs the
//! ranges on the rayon pool that the worker starts with `initThreadPool`; every other build
//! runs them in order on the calling thread. Each range is computed the same way in both, so
//! results do not depend on the number of threads.

use std::ops::Range;

/// Number of threads that `for_each_range` spreads work over.
pub fn threads() -> usize {
    #[cfg(feature = "threads")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "threads"))]
    {
        1
    }
}

/// Calls `f` once for each range of a partition of `0..len`, in parallel where there are
/// threads. Every range but the last starts and ends at a multiple of `align`. With fewer than
/// `min_len` items, or one thread, `f(0..len)` runs on the calling thread.
pub fn for_each_range<F>(len: usize, align: usize, min_len: usize, f: F)
where
    F: Fn(Range<usize>) + Sync + Send,
{
    let parts = split(len, align, if len < min_len { 1 } else { threads() });
    if parts.len() <= 1 {
        f(0..len);
        return;
    }
    #[cfg(feature = "threads")]
    {
        use rayon::prelude::*;
        parts.into_par_iter().for_each(|r| f(r));
    }
    #[cfg(not(feature = "threads"))]
    for r in parts {
        f(r)
    }
}

/// Splits `0..len` into at most `n` ranges of nearly equal length, each boundary a multiple of
/// `align` (the last range takes the remainder).
pub fn split(len: usize, align: usize, n: usize) -> Vec<Range<usize>> {
    let align = align.max(1);
    let n = n.max(1);
    let units = len.div_ceil(align);
    let per = units.div_ceil(n).max(1) * align;
    (0..len)
        .step_by(per)
        .map(|start| start..(start + per).min(len))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_range_with_aligned_boundaries() {
        for len in [0, 1, 3, 4, 5, 63, 64, 65, 1536, 49152] {
            for n in 1..=5 {
                let parts = split(len, 4, n);
                assert!(parts.len() <= n);
                let mut next = 0;
                for r in &parts {
                    assert_eq!(r.start, next);
                    assert_eq!(r.start % 4, 0);
                    assert!(r.end > r.start);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn for_each_range_visits_every_index_once() {
        let seen = std::sync::Mutex::new(vec![0u8; 1000]);
        for_each_range(1000, 8, 0, |r| {
            let mut s = seen.lock().unwrap();
            for i in r {
                s[i] += 1;
            }
        });
        assert!(seen.into_inner().unwrap().iter().all(|&c| c == 1));
    }
}
