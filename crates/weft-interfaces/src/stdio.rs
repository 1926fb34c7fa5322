//! Guest stdout/stderr for servers: each line is prefixed with the instance id, as
//! `wasmtime serve` does (`stdout [3] :: hello`), so interleaved output stays readable.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Which host stream a guest stream goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// Line-prefixing writer to the host's stdout or stderr.
pub struct PrefixedWriter {
    output: Output,
    prefix: String,
    at_line_start: bool,
}

impl PrefixedWriter {
    pub fn new(output: Output, prefix: String) -> Self {
        Self {
            output,
            prefix,
            at_line_start: true,
        }
    }

    /// Prefixes every line of `bytes` and writes the result in one call, so lines from
    /// concurrent instances do not interleave mid-line.
    pub fn render(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + self.prefix.len());
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            if self.at_line_start {
                out.extend_from_slice(self.prefix.as_bytes());
            }
            out.extend_from_slice(piece);
            self.at_line_start = piece.ends_with(b"\n");
        }
        out
    }

    fn write_host(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let rendered = self.render(bytes);
        match self.output {
            Output::Stdout => std::io::stdout().lock().write_all(&rendered),
            Output::Stderr => std::io::stderr().lock().write_all(&rendered),
        }
    }
}

/// A WASI stdout/stderr stream that writes synchronously to the host stream, line-prefixed.
/// Cheap to create (no background task per instance) because it is created per request.
#[derive(Clone)]
pub struct PrefixedStream(Arc<Mutex<PrefixedWriter>>);

impl PrefixedStream {
    fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = match self.0.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        w.write_host(bytes)
    }
}

/// A WASI stdout/stderr stream into a workload's log buffer, one record per line.
#[derive(Clone)]
pub struct SinkStream(Arc<Mutex<SinkWriter>>);

struct SinkWriter {
    sink: weft_engine::logs::LogSink,
    component: Arc<str>,
    stream: &'static str,
    partial: Vec<u8>,
}

impl SinkStream {
    pub fn new(sink: weft_engine::logs::LogSink, component: &str, output: Output) -> Self {
        SinkStream(Arc::new(Mutex::new(SinkWriter {
            sink,
            component: component.into(),
            stream: match output {
                Output::Stdout => "stdout",
                Output::Stderr => "stderr",
            },
            partial: Vec::new(),
        })))
    }

    fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = match self.0.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            w.partial.extend_from_slice(piece);
            let full = piece.ends_with(b"\n") || w.partial.len() >= weft_engine::logs::MAX_LINE;
            if full {
                let line = String::from_utf8_lossy(&w.partial).into_owned();
                w.partial.clear();
                w.sink.push(&w.component, w.stream, &line);
            }
        }
        Ok(())
    }
}

impl Drop for SinkWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.sink.push(&self.component, self.stream, &line);
        }
    }
}

macro_rules! sync_stdout_stream {
    ($ty:ty) => {
        impl StdoutStream for $ty {
            fn p2_stream(&self) -> Box<dyn OutputStream> {
                Box::new(self.clone())
            }
            fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
                Box::new(self.clone())
            }
        }

        impl IsTerminal for $ty {
            fn is_terminal(&self) -> bool {
                false
            }
        }

        impl OutputStream for $ty {
            fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
                self.write_all(&bytes)
                    .map_err(|e| StreamError::LastOperationFailed(e.into()))
            }
            fn flush(&mut self) -> StreamResult<()> {
                Ok(())
            }
            fn check_write(&mut self) -> StreamResult<usize> {
                Ok(64 * 1024)
            }
        }

        #[async_trait::async_trait]
        impl Pollable for $ty {
            async fn ready(&mut self) {}
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                Poll::Ready(self.write_all(buf).map(|()| buf.len()))
            }

            fn poll_flush(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
    };
}

sync_stdout_stream!(PrefixedStream);
sync_stdout_stream!(SinkStream);

/// A WASI stdout/stderr stream for instance `id`.
pub fn prefixed_stream(output: Output, id: u64) -> PrefixedStream {
    let name = match output {
        Output::Stdout => "stdout",
        Output::Stderr => "stderr",
    };
    PrefixedStream(Arc::new(Mutex::new(PrefixedWriter::new(
        output,
        format!("{name} [{id}] :: "),
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_each_line_once_across_writes() {
        let mut w = PrefixedWriter::new(Output::Stdout, "p: ".into());
        let mut all = w.render(b"a\nb");
        all.extend(w.render(b"c\n\nd\n"));
        assert_eq!(String::from_utf8_lossy(&all), "p: a\np: bc\np: \np: d\n");
    }
}
