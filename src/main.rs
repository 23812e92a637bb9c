//! The `tyk-idsync` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    tyk_idsync::cli::run()
}
