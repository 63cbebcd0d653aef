//! Allocator tuning for the `exile-master` binary.
//!
//! Why this module needs `unsafe`: the only way to tune glibc's allocator is its C entry point
//! `mallopt`, which has no safe wrapper. The call below is made once, at start, before any
//! other thread exists, with constant arguments; it cannot touch Rust-owned memory.
//!
//! What it fixes: every argon2id password hash borrows 19 MiB of working memory. glibc serves
//! the first such block with `mmap`, and when it is freed raises its "mmap threshold" to that
//! size, so every later hash is carved out of a heap arena instead and stays resident after
//! it is freed. One login therefore left an idle master at ~34 MiB instead of ~14 MiB (the
//! design's idle target is 20 MiB). Fixing the threshold (which also turns off glibc's
//! dynamic adjustment) sends any block of 1 MiB or more straight back to the kernel on free.
#![allow(unsafe_code)]

/// Blocks at least this large are mapped on their own and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Applies the tuning; call it first thing in `main`, before any thread is started. Returns
/// false if the allocator refused it (true where the allocator is not glibc's: nothing to do).
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters and is called before other threads
    // exist (glibc documents it as unsafe only against concurrent initialisation);
    // M_MMAP_THRESHOLD with a value below 32 MiB is valid and returns 1 on success.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}
