//! Data parallelism over index ranges. The threaded wasm build (feature `threads`) runs the
//! ranges on helper threads taken from the rayon pool that the worker starts with
//! `initThreadPool`, and on the calling thread. Every other build runs them in order on the
//! calling thread. Each range is computed the same way in both, so results do not depend on
//! the number of threads.
//!
//! A decode step hands out about a hundred small matmuls, tens of microseconds each. Handing
//! each to rayon cost more than it saved on two cores. The caller slept until a pool thread
//! woke, took the job and woke the caller again. Decoding on two threads ran at 40 tokens/s
//! against 67 on one. So the helpers here spin for a while between jobs, and the caller takes
//! ranges too: whichever thread is free takes the next range.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Upper bound on `threads`, set by `set_thread_limit`.
static THREAD_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Number of threads that `for_each_range` spreads work over: the pool's threads, at most the
/// limit of `set_thread_limit`.
pub fn threads() -> usize {
    pool_threads().min(THREAD_LIMIT.load(Ordering::Relaxed))
}

/// Caps the threads of later `for_each_range` calls at `limit` (0 counts as 1), for example
/// when several engines in one browser share the cores. `usize::MAX` lifts the cap. Results do
/// not depend on it.
pub fn set_thread_limit(limit: usize) {
    THREAD_LIMIT.store(limit.max(1), Ordering::Relaxed);
}

/// Number of threads in the pool, the calling thread included.
pub fn pool_threads() -> usize {
    #[cfg(feature = "threads")]
    {
        pool::get().map_or(1, |p| p.helpers + 1)
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
        let pool = pool::get().expect("more than one part means a pool with helpers");
        pool.run(parts.len(), &|part: usize| f(parts[part].clone()));
    }
    #[cfg(not(feature = "threads"))]
    for r in parts {
        f(r)
    }
}

#[cfg(feature = "threads")]
mod pool {
    use std::cell::UnsafeCell;
    use std::hint::spin_loop;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::thread::Thread;

    /// Rounds a helper polls for the next job before it parks, about 100 microseconds in
    /// Chromium on a 2-core AMD EPYC (an estimate). That is longer than the gaps between the
    /// matmuls of a decode step and far shorter than the pause between two chat turns.
    const SPIN_ROUNDS: u32 = 100_000;

    /// Rounds the caller waits for a part that a helper took before it concludes that the
    /// helper has stopped.
    const HELPER_LOST_SPINS: u64 = 1 << 35;

    type Task = dyn Fn(usize) + Sync;

    /// Helper threads that share each job's parts with the calling thread. Every thread takes
    /// the next untaken part until none is left, so a helper that the operating system has not
    /// scheduled (other programs on the cores) delays nothing: the caller does its parts.
    pub struct Pool {
        pub helpers: usize,
        /// The job's number in the high 32 bits and the next untaken part in the low 32 bits.
        /// Taking a part is a compare-and-swap on both, so a helper that still looks at an
        /// earlier job can never take a part of the current one.
        state: AtomicU64,
        /// Parts of the current job, written before its number is published.
        parts: AtomicUsize,
        /// Parts of the current job that are finished.
        done: AtomicUsize,
        /// The current job. Written by the caller before it publishes the job's number, read
        /// by a thread only after it took a part, and valid until every part is done.
        task: UnsafeCell<Option<*const Task>>,
        sleeping: Vec<AtomicBool>,
        handles: Mutex<Vec<Option<Thread>>>,
        started: AtomicUsize,
        /// Set while a job runs. A call made meanwhile (from inside a job) runs its parts in
        /// order on its own thread instead of replacing the job the others are reading.
        busy: AtomicBool,
    }

    // SAFETY: `task` is only written while no thread can read it (between jobs), as described
    // on the field. Everything else is atomic or behind a mutex.
    unsafe impl Sync for Pool {}
    unsafe impl Send for Pool {}

    static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();

    /// Returns the pool, started on first use with one helper per rayon thread but one, or
    /// `None` when rayon has a single thread.
    pub fn get() -> Option<&'static Pool> {
        *POOL.get_or_init(|| {
            let helpers = rayon::current_num_threads().saturating_sub(1);
            if helpers == 0 {
                return None;
            }
            let pool: &'static Pool = Box::leak(Box::new(Pool {
                helpers,
                state: AtomicU64::new(0),
                parts: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                task: UnsafeCell::new(None),
                sleeping: (0..helpers).map(|_| AtomicBool::new(false)).collect(),
                handles: Mutex::new(vec![None; helpers]),
                started: AtomicUsize::new(0),
                busy: AtomicBool::new(false),
            }));
            for i in 0..helpers {
                rayon::spawn(move || pool.helper(i));
            }
            while pool.started.load(Ordering::Acquire) < helpers {
                spin_loop();
            }
            Some(pool)
        })
    }

    impl Pool {
        fn helper(&self, i: usize) {
            self.handles.lock().expect("no helper panicked")[i] = Some(std::thread::current());
            self.started.fetch_add(1, Ordering::Release);
            let mut seen = 0;
            loop {
                let mut spins = 0;
                let job = loop {
                    let job = self.state.load(Ordering::SeqCst) >> 32;
                    if job != seen {
                        break job;
                    }
                    spins += 1;
                    if spins < SPIN_ROUNDS {
                        spin_loop();
                        continue;
                    }
                    // Announce the sleep, then look once more, so a job published in between
                    // is either seen here or followed by an unpark.
                    self.sleeping[i].store(true, Ordering::SeqCst);
                    if self.state.load(Ordering::SeqCst) >> 32 == seen {
                        std::thread::park();
                    }
                    self.sleeping[i].store(false, Ordering::SeqCst);
                    spins = 0;
                };
                seen = job;
                self.take_parts(job);
            }
        }

        /// Runs untaken parts of job `job` until none is left or another job has started.
        fn take_parts(&self, job: u64) {
            loop {
                let state = self.state.load(Ordering::SeqCst);
                if state >> 32 != job {
                    return;
                }
                let part = (state & u64::from(u32::MAX)) as usize;
                if part >= self.parts.load(Ordering::SeqCst) {
                    return;
                }
                if self
                    .state
                    .compare_exchange(state, state + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    continue;
                }
                // SAFETY: part `part` of the current job is taken and not done, so the caller
                // has not returned and `task` still points to its job.
                let task = unsafe { &*(*self.task.get()).expect("a job is published") };
                task(part);
                self.done.fetch_add(1, Ordering::Release);
            }
        }

        /// Runs `task(0..parts)` on this thread and the helpers, and returns when all are
        /// done. A call made while another runs does its parts in order on its own thread.
        pub fn run<'a>(&self, parts: usize, task: &'a (dyn Fn(usize) + Sync + 'a)) {
            if self.busy.swap(true, Ordering::AcqRel) {
                for part in 0..parts {
                    task(part);
                }
                return;
            }
            // SAFETY: no thread reads `task` between jobs, and this function does not return
            // before every part is done, so the erased lifetime is not outlived.
            unsafe {
                *self.task.get() = Some(std::mem::transmute::<
                    &'a (dyn Fn(usize) + Sync + 'a),
                    &'static Task,
                >(task));
            }
            self.parts.store(parts, Ordering::SeqCst);
            self.done.store(0, Ordering::SeqCst);

            // Publish the job and wake the helpers that sleep.
            let job =
                (self.state.load(Ordering::SeqCst) >> 32).wrapping_add(1) & u64::from(u32::MAX);
            let job = if job == 0 { 1 } else { job };
            self.state.store(job << 32, Ordering::SeqCst);
            for (i, sleeping) in self.sleeping.iter().enumerate() {
                if sleeping.load(Ordering::SeqCst) {
                    if let Some(handle) = &self.handles.lock().expect("no helper panicked")[i] {
                        handle.unpark();
                    }
                }
            }

            self.take_parts(job);

            let mut spins: u64 = 0;
            while self.done.load(Ordering::Acquire) < parts {
                spin_loop();
                spins += 1;
                // A helper that trapped never finishes its part. The largest part, a prefill
                // chunk's FFN, takes milliseconds, so this many rounds (seconds) means a
                // helper is gone: stop with a message rather than spin forever.
                if spins == HELPER_LOST_SPINS {
                    panic!("a helper thread of the thread pool stopped; reload the page");
                }
            }
            self.busy.store(false, Ordering::Release);
        }
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

/// The pool's own paths, natively: `cargo test --release --features threads --lib parallel`.
#[cfg(all(test, feature = "threads"))]
mod pool_tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard, Once};
    use std::thread::ThreadId;
    use std::time::Duration;

    /// Starts three rayon threads whatever the machine's core count, so the pool has two
    /// helpers. The returned guard keeps the tests of this module from running at the same
    /// time, because `set_thread_limit` changes a global.
    fn start_pool() -> MutexGuard<'static, ()> {
        static START: Once = Once::new();
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        START.call_once(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build_global()
                .expect("the first use of rayon in this test binary");
        });
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        set_thread_limit(usize::MAX);
        assert_eq!(threads(), 3);
        guard
    }

    /// Runs `for_each_range` over `len` items and checks that each was visited once; returns
    /// the threads that ran a range.
    fn visit_once(len: usize, range_time: Duration) -> Vec<ThreadId> {
        let counts: Vec<AtomicUsize> = (0..len).map(|_| AtomicUsize::new(0)).collect();
        let runners = Mutex::new(Vec::new());
        for_each_range(len, 4, 0, |r| {
            runners.lock().unwrap().push(std::thread::current().id());
            std::thread::sleep(range_time);
            for i in r {
                counts[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        for (i, c) in counts.iter().enumerate() {
            assert_eq!(c.load(Ordering::Relaxed), 1, "index {i} of {len}");
        }
        runners.into_inner().unwrap()
    }

    #[test]
    fn parked_helpers_wake_for_the_next_job() {
        let _one_at_a_time = start_pool();
        let caller = std::thread::current().id();
        let mut helped = 0;
        for round in 0..20 {
            // Far longer than a helper's spin, so every helper has parked before the job.
            std::thread::sleep(Duration::from_millis(20));
            let runners = visit_once(96 + round, Duration::from_millis(5));
            assert_eq!(runners.len(), 3, "round {round}: three ranges");
            helped += runners.iter().filter(|&&t| t != caller).count();
        }
        // A woken helper takes a range while the caller sleeps 5 ms in its own. A parked helper
        // that is never unparked would leave every range to the caller.
        assert!(helped > 0, "no range ran on a helper in 20 jobs");
    }

    #[test]
    fn jobs_back_to_back_and_from_two_callers() {
        let _one_at_a_time = start_pool();
        for len in 0..300 {
            visit_once(len, Duration::ZERO);
        }
        // A second caller while a job runs takes the in-order path; both finish.
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for len in [7, 64, 1000] {
                        for _ in 0..50 {
                            visit_once(len, Duration::ZERO);
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn nested_call_runs_in_order() {
        let _one_at_a_time = start_pool();
        let total = AtomicUsize::new(0);
        for_each_range(64, 4, 0, |outer| {
            for_each_range(100, 4, 0, |inner| {
                total.fetch_add(outer.len() * inner.len(), Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 64 * 100);
    }

    #[test]
    fn thread_limit_caps_the_ranges() {
        let _one_at_a_time = start_pool();
        let caller = std::thread::current().id();
        set_thread_limit(1);
        assert_eq!(threads(), 1);
        let runners = visit_once(1000, Duration::from_millis(1));
        assert_eq!(runners, vec![caller], "one range, on the calling thread");
        set_thread_limit(2);
        assert_eq!(visit_once(1000, Duration::ZERO).len(), 2);
        set_thread_limit(usize::MAX);
        assert_eq!(visit_once(1000, Duration::ZERO).len(), 3);
    }
}
