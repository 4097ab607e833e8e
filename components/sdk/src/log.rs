//! Log lines through the host, which tags them with the component and the
//! correlation id. Off wasm (in native unit tests) they go to stderr.

use crate::bindings::weft::service::logging::Level;

/// Writes one log line at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::weft::service::logging::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Debugging detail.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Normal operation.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Something odd that the component handled.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Something failed.
pub fn error(message: &str) {
    log(Level::Error, message);
}
