//! A `nats-server` of one's own, for tests, benchmarks and the crash test:
//! JetStream on, on a port of its own, its store and log in a given
//! directory; killed when dropped. Needs `nats-server` on the `PATH`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to accept connections.
const START_WAIT: Duration = Duration::from_secs(10);

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    /// The program could not be run.
    #[error("cannot run nats-server (apt-get install nats-server): {0}")]
    NotRunnable(std::io::Error),
    /// No free port, or the store directory could not be made.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It ran, but did not accept connections in time.
    #[error("nats-server did not accept connections on port {port} within {START_WAIT:?}")]
    NotListening {
        /// The port it was given.
        port: u16,
    },
}

/// A running `nats-server -js`.
pub struct NatsServer {
    process: Child,
    port: u16,
}

impl NatsServer {
    /// Starts one on `127.0.0.1:port` (`0`: a free port) with its JetStream
    /// store and `nats.log` in `store`, and waits until it accepts
    /// connections. Starting again on the same port and store is a restart:
    /// the streams are still there.
    pub fn start(store: &Path, port: u16) -> Result<NatsServer, NatsServerError> {
        Self::start_with(store, port, &[])
    }

    /// [`NatsServer::start`] with more arguments for `nats-server`
    /// (`--tls …`, `--user …`).
    pub fn start_with(
        store: &Path,
        port: u16,
        args: &[&str],
    ) -> Result<NatsServer, NatsServerError> {
        std::fs::create_dir_all(store)?;
        let port = match port {
            0 => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            port => port,
        };
        let process = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .arg("-l")
            .arg(store.join(format!("nats-{port}.log")))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(NatsServerError::NotRunnable)?;
        let mut server = NatsServer { process, port };
        let until = Instant::now() + START_WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > until || matches!(server.process.try_wait(), Ok(Some(_))) {
                return Err(NatsServerError::NotListening { port });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it outright, as a crash would; its store stays.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
