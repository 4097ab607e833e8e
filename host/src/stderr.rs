//! What a guest writes to stderr — in practice the message of a Rust panic —
//! is kept in memory, up to [`KEEP`] bytes, and shows up in the log line of
//! the invocation that failed. It never reaches the host's own stderr: a
//! guest in a trap storm must not be able to flood the host's output, and a
//! panic message belongs next to the component name and correlation id.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of stderr kept per invocation; the rest is counted and dropped.
pub const KEEP: usize = 2048;

/// A guest's stderr for one invocation. Writing never fails, so a chatty
/// guest is not turned into a failing one.
#[derive(Clone, Default)]
pub struct GuestStderr {
    kept: Arc<Mutex<Vec<u8>>>,
}

impl GuestStderr {
    /// What the guest wrote, as text, trimmed; `None` when nothing.
    pub fn text(&self) -> Option<String> {
        let kept = self.kept.lock().ok()?;
        let text = String::from_utf8_lossy(&kept);
        let text = text.trim();
        (!text.is_empty()).then(|| text.replace('\n', " | "))
    }
}

impl AsyncWrite for GuestStderr {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl GuestStderr {
    fn keep(&self, bytes: &[u8]) {
        if let Ok(mut kept) = self.kept.lock() {
            let room = KEEP.saturating_sub(kept.len());
            kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
}

impl StdoutStream for GuestStderr {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    // A direct WASIp2 stream: the default adapter spawns a task per stream,
    // which a panicking guest (one stream per panic message) pays for.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestStderr {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always room: what is past KEEP is dropped, not refused.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStderr {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn keeps_the_start_and_never_fails() -> std::io::Result<()> {
        let stderr = GuestStderr::default();
        assert_eq!(stderr.text(), None);
        let mut writer = Box::into_pin(stderr.async_stream());
        writer
            .write_all(b"panicked at src/lib.rs:3:5:\nboom\n")
            .await?;
        assert_eq!(
            stderr.text().as_deref(),
            Some("panicked at src/lib.rs:3:5: | boom")
        );
        writer.write_all(&vec![b'x'; 10 * KEEP]).await?;
        assert!(stderr.text().is_some_and(|t| t.len() <= KEEP + 8));
        // The WASIp2 stream the guest really writes through keeps the same.
        let fresh = GuestStderr::default();
        let mut stream = fresh.p2_stream();
        assert!(stream.check_write().is_ok_and(|n| n > 0));
        assert!(stream.write(bytes::Bytes::from_static(b"boom\n")).is_ok());
        assert_eq!(fresh.text().as_deref(), Some("boom"));
        Ok(())
    }
}
