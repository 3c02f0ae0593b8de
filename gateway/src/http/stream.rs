//! A document written by a blocking writer, streamed as the response body while it is written.
//! The printer's order of a million codes is hundreds of megabytes: it is never held, only the
//! chunk being written and the two waiting for the client.

use std::io::{self, Write};

use axum::body::Body;
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;

/// The body of a document that `write` writes, on a blocking thread, to the writer it is given.
/// Chunks of 64 KiB go out as they are written; when two wait for a slow client the writer waits
/// too, and when the client goes away its next write fails and it stops. An error after the
/// response began cuts the body short (the client sees an incomplete transfer, never a complete
/// file that lacks rows) and is logged.
pub fn blocking_body<F>(document: &'static str, write: F) -> Body
where
    F: FnOnce(&mut ChunkWriter) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(2);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter { buf: Vec::with_capacity(CHUNK), tx: tx.clone() };
        // a panic too must end the body with an error: ended plainly, it would look whole
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write(&mut out).and_then(|()| out.flush().map_err(|e| e.to_string()))
        }))
        .unwrap_or_else(|_| Err("the writer panicked".to_string()));
        if let Err(error) = written {
            tracing::warn!(document, %error, "a streamed document stopped before its end");
            let _ = tx.blocking_send(Err(io::Error::other(error)));
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// Where [`blocking_body`]'s writer writes: a buffer sent on as a chunk when full.
pub struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() { Ok(()) } else { self.send() }
    }
}
