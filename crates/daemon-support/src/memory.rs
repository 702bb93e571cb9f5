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
