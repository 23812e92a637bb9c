//! The `tyk-idsync` binary: everything lives in the library; see `cli`.

/// The service's allocator (mimalloc): the LDAP poll and the SCIM endpoint make
/// many small, short-lived allocations, where it is markedly faster than glibc's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tyk_idsync::cli::run()
}
