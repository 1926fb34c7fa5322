/// mimalloc as the global allocator (docs/benchmarks.md, "The allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `arena_eager_commit` (`mi_option_e` in mimalloc v3's `mimalloc.h`).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs before `main` and before the first allocation: mimalloc reserves its first arena on
/// the first allocation, so the option must be set earlier than `main` can.
extern "C" fn lazy_commit() {
    // Commit arena memory as it is used, not up front: with eager commit mimalloc held 12 MiB
    // more resident after load than the system allocator (docs/benchmarks.md).
    #[allow(unsafe_code)]
    // SAFETY: sets a process-wide allocator option before any thread exists; the call takes
    // plain integers and has no other precondition.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

#[allow(unsafe_code)]
// SAFETY: an ELF initializer: a plain `extern "C" fn()` that the loader calls once, before main.
#[unsafe(link_section = ".init_array")]
#[used]
static LAZY_COMMIT: extern "C" fn() = lazy_commit;

fn main() {
    std::process::exit(weft::main());
}
