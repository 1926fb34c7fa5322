//! A bounded pool of PostgreSQL connections, shared by every call in the service's instance.
//!
//! The instance is single-threaded: calls are concurrent tasks of it (Weft runs each
//! forwarded call as a task, up to `spec.service.maxConcurrency` at once), so the pool is
//! plain `Cell`/`RefCell` state, never borrowed across an `await`. A call takes an idle
//! connection, or opens one while fewer than `max` are open, or waits until another call
//! gives one back. At most `max` connections exist at any moment, however many calls wait.
//!
//! A connection that broke is dropped, not returned. When an idle connection turns out to
//! be dead on first use (the server restarted, or dropped it), every idle connection is as
//! old, so they are all dropped and the request is sent once more on a new connection: the
//! server never saw the first attempt (see [`pg::Error::is_stale`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use wit_bindgen::{StreamReader, StreamWriter};

use crate::pg::{self, Conn, Config, Reply};

/// How connections are used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep up to `max` connections open and reuse them.
    Pooled,
    /// Open a connection for each call and close it after (the benchmark's baseline); still
    /// at most `max` at once.
    PerCall,
}

/// One request to the server.
pub enum Request<'a> {
    /// Fixed SQL, simple protocol.
    Simple(&'a str),
    /// One statement with bound text parameters.
    Query(&'a str, &'a [Option<&'a str>]),
}

pub struct Pool {
    pub cfg: Config,
    pub mode: Mode,
    pub max: u32,
    idle: RefCell<Vec<Conn>>,
    open: Cell<u32>,
    waiting: Cell<u32>,
    waiters: RefCell<VecDeque<Waiter>>,
    next_waiter: Cell<u64>,
    pub opened_total: Cell<u64>,
    pub discarded_total: Cell<u64>,
    pub last_error: RefCell<Option<String>>,
}

/// A connection taken from the pool.
struct Lease {
    conn: Conn,
    /// It was idle in the pool (so it may have died meanwhile).
    reused: bool,
}

impl Pool {
    pub fn new(cfg: Config, mode: Mode, max: u32) -> Pool {
        Pool {
            cfg,
            mode,
            max: max.max(1),
            idle: RefCell::new(Vec::new()),
            open: Cell::new(0),
            waiting: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
            next_waiter: Cell::new(0),
            opened_total: Cell::new(0),
            discarded_total: Cell::new(0),
            last_error: RefCell::new(None),
        }
    }

    pub fn open(&self) -> u32 {
        self.open.get()
    }

    pub fn idle(&self) -> u32 {
        self.idle.borrow().len() as u32
    }

    pub fn waiting(&self) -> u32 {
        self.waiting.get()
    }

    fn note_error(&self, e: &pg::Error) {
        *self.last_error.borrow_mut() = Some(e.to_string());
    }

    /// Sends one request on a pooled connection and returns the reply.
    pub async fn run(&self, request: &Request<'_>) -> Result<Reply, pg::Error> {
        let mut lease = self.acquire().await?;
        let mut result = send(&mut lease.conn, request).await;
        if let Err(e) = &result
            && lease.reused
            && e.is_stale()
        {
            // The server dropped this idle connection before it saw the request: so did it
            // every other idle one. Start over on a new connection, once.
            self.note_error(e);
            self.discard(lease.conn);
            self.drain_idle();
            lease = self.acquire().await?;
            result = send(&mut lease.conn, request).await;
        }
        if let Err(e) = &result
            && e.sqlstate().is_none_or(|c| !c.starts_with("22") && !c.starts_with("23"))
        {
            // Bad input (data exceptions, constraint violations) is not a database problem.
            self.note_error(e);
        }
        self.release(lease.conn).await;
        result
    }

    async fn acquire(&self) -> Result<Lease, pg::Error> {
        loop {
            if self.mode == Mode::Pooled
                && let Some(conn) = self.idle.borrow_mut().pop()
            {
                return Ok(Lease { conn, reused: true });
            }
            if self.open.get() < self.max {
                self.open.set(self.open.get() + 1);
                self.opened_total.set(self.opened_total.get() + 1);
                return match pg::connect(&self.cfg).await {
                    Ok(conn) => Ok(Lease {
                        conn,
                        reused: false,
                    }),
                    Err(e) => {
                        self.open.set(self.open.get() - 1);
                        self.note_error(&e);
                        self.wake_one();
                        Err(e)
                    }
                };
            }
            self.waiting.set(self.waiting.get() + 1);
            Wait::new(self).until_woken().await;
            self.waiting.set(self.waiting.get() - 1);
        }
    }

    async fn release(&self, conn: Conn) {
        if conn.is_broken() {
            self.discard(conn);
        } else if self.mode == Mode::Pooled {
            self.idle.borrow_mut().push(conn);
            self.wake_one();
        } else {
            conn.close().await;
            self.open.set(self.open.get() - 1);
            self.wake_one();
        }
    }

    fn discard(&self, conn: Conn) {
        drop(conn);
        self.open.set(self.open.get() - 1);
        self.discarded_total.set(self.discarded_total.get() + 1);
        self.wake_one();
    }

    fn drain_idle(&self) {
        let idle: Vec<Conn> = std::mem::take(&mut *self.idle.borrow_mut());
        for conn in idle {
            self.discard(conn);
        }
    }

    /// Lets the longest-waiting call try again.
    fn wake_one(&self) {
        let next = self.waiters.borrow_mut().pop_front();
        if let Some(waiter) = next {
            drop(waiter.signal);
        }
    }
}

async fn send(conn: &mut Conn, request: &Request<'_>) -> Result<Reply, pg::Error> {
    match request {
        Request::Simple(sql) => conn.simple(sql).await,
        Request::Query(sql, params) => conn.query(sql, params).await,
    }
}

/// One call waiting for a connection: the pool drops `signal` to wake it.
struct Waiter {
    id: u64,
    signal: StreamWriter<u8>,
}

/// Waits for [`Pool::wake_one`].
///
/// The wake-up travels through a component-model stream of this instance: the waiting call
/// reads it, and the pool drops the writing end, which ends the read. A plain Rust `Waker`
/// would not do: waking one task of the instance from another needs wit-bindgen's
/// `inter-task-wakeup`, whose cancellation order wasmtime 48 rejects (a synchronous cancel of
/// a waitable that is still in a waitable set traps). A future would not do either: wasmtime
/// 48 allows both ends in one instance only for numeric payloads, and `stream<u8>` is the
/// one such type this world has (from `wasi:sockets`).
struct Wait<'a> {
    pool: &'a Pool,
    id: u64,
    reader: Option<StreamReader<u8>>,
    done: bool,
}

impl<'a> Wait<'a> {
    fn new(pool: &'a Pool) -> Wait<'a> {
        let (signal, reader) = crate::wit_stream::new::<u8>();
        let id = pool.next_waiter.get();
        pool.next_waiter.set(id + 1);
        pool.waiters.borrow_mut().push_back(Waiter { id, signal });
        Wait {
            pool,
            id,
            reader: Some(reader),
            done: false,
        }
    }

    async fn until_woken(mut self) {
        if let Some(mut reader) = self.reader.take() {
            // Nothing is ever written: the read ends when the writer is dropped.
            let _ = reader.read(Vec::with_capacity(1)).await;
        }
        self.done = true;
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped before the wake-up arrived: leave the queue, or, if already woken, pass
        // the wake-up on so that a free slot is never lost.
        let mut waiters = self.pool.waiters.borrow_mut();
        let before = waiters.len();
        waiters.retain(|w| w.id != self.id);
        let was_queued = waiters.len() != before;
        drop(waiters);
        if !was_queued {
            self.pool.wake_one();
        }
    }
}
