//! `todo-db`: the todo example's long-lived service (a WASI 0.3 component).
//!
//! It owns a bounded pool of PostgreSQL connections over `wasi:sockets` and exports
//! `example:todo/store@0.1.0`, which the workload's `todo-http` component imports; Weft
//! forwards each call into this one instance, so every request shares the pool.
//!
//! The service connects to `PG_ADDR` (default `127.0.0.1:5432`), an address in the guest's
//! own view: the manifest's socket rule redirects that port to wherever the host's
//! PostgreSQL listens, and no other port is reachable. Configuration (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PG_ADDR` | `127.0.0.1:5432` | IPv4 address and port to connect to |
//! | `PG_USER` / `PG_PASSWORD` / `PG_DATABASE` | `todo` / empty / `todo` | login (SCRAM-SHA-256) |
//! | `POOL_SIZE` | `4` | at most this many connections at once (1 to 64) |
//! | `POOL_MODE` | `pooled` | `pooled`, or `per-call`: a new connection for every call (a baseline) |
//!
//! `run` creates the schema once at start (retrying with backoff while the database is not
//! reachable), then waits forever. Input is validated here (the service is the authority)
//! and every value reaches SQL as a bound parameter.

mod pg;
mod pool;

wit_bindgen::generate!({
    path: "../wit",
    world: "example:todo/db",
    generate_all,
});

use std::cell::Cell;
use std::net::SocketAddrV4;
use std::rc::Rc;

use exports::example::todo::store::{
    self, Error as StoreError, Filter, ListCount, NewTodo, PoolStats, Status, Todo,
};
use pool::{Mode, Pool, Request};

/// Longest title, list name, tag and search text, in characters.
const MAX_TITLE: usize = 200;
const MAX_LIST: usize = 40;
const MAX_TAG: usize = 24;
const MAX_TAGS: usize = 8;
const MAX_SEARCH: usize = 100;
/// Rows returned by one query at most.
const MAX_ROWS: u32 = 500;

/// The schema, created once (and found again after a restart). An advisory lock keeps two
/// services that start at once from racing on `CREATE ... IF NOT EXISTS`.
const SCHEMA: &str = "
BEGIN;
SELECT pg_advisory_xact_lock(7350818);
CREATE TABLE IF NOT EXISTS lists (
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 40)
);
CREATE TABLE IF NOT EXISTS todos (
  id bigserial PRIMARY KEY,
  list_id bigint NOT NULL REFERENCES lists(id),
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  done boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS todos_list_id ON todos (list_id);
CREATE TABLE IF NOT EXISTS tags (
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9-]{1,24}$')
);
CREATE TABLE IF NOT EXISTS todo_tags (
  todo_id bigint NOT NULL REFERENCES todos(id) ON DELETE CASCADE,
  tag_id bigint NOT NULL REFERENCES tags(id),
  PRIMARY KEY (todo_id, tag_id)
);
CREATE INDEX IF NOT EXISTS todo_tags_tag_id ON todo_tags (tag_id);
COMMIT;
";

/// The columns of a todo, in the order [`todo_from_row`] reads them: `t` is the todo (or
/// the row an UPDATE returned), `l` its list.
const TODO_COLUMNS: &str = "t.id, t.title, t.done, l.name,
  coalesce((SELECT string_agg(g.name, ',' ORDER BY g.name)
            FROM todo_tags x JOIN tags g ON g.id = x.tag_id WHERE x.todo_id = t.id), ''),
  to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

thread_local! {
    static STATE: Result<Rc<Pool>, String> = config().map(|(cfg, mode, max)| Rc::new(Pool::new(cfg, mode, max)));
    static SCHEMA_READY: Cell<bool> = const { Cell::new(false) };
}

fn env() -> Vec<(String, String)> {
    wasi::cli::environment::get_environment()
}

/// Reads the configuration from the environment; the error names the variable.
fn config() -> Result<(pg::Config, Mode, u32), String> {
    let env = env();
    let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let addr_text = var("PG_ADDR").unwrap_or_else(|| "127.0.0.1:5432".into());
    let addr: SocketAddrV4 = addr_text
        .parse()
        .map_err(|_| format!("PG_ADDR={addr_text:?} is not an IPv4 address and port (e.g. 127.0.0.1:5432)"))?;
    let max = match var("POOL_SIZE") {
        None => 4,
        Some(v) => match v.parse::<u32>() {
            Ok(n @ 1..=64) => n,
            _ => return Err(format!("POOL_SIZE={v:?} must be a whole number from 1 to 64")),
        },
    };
    let mode = match var("POOL_MODE").as_deref() {
        None | Some("pooled") => Mode::Pooled,
        Some("per-call") => Mode::PerCall,
        Some(other) => {
            return Err(format!("POOL_MODE={other:?} must be `pooled` or `per-call`"));
        }
    };
    let cfg = pg::Config {
        addr,
        user: var("PG_USER").unwrap_or_else(|| "todo".into()),
        password: var("PG_PASSWORD").unwrap_or_default(),
        database: var("PG_DATABASE").unwrap_or_else(|| "todo".into()),
    };
    Ok((cfg, mode, max))
}

fn pool() -> Result<Rc<Pool>, StoreError> {
    STATE.with(|s| s.clone().map_err(|e| StoreError::Unavailable(format!("bad configuration: {e}"))))
}

fn unavailable(e: pg::Error) -> StoreError {
    match e.sqlstate() {
        // Data exceptions and integrity violations: the input, not the database.
        Some(c) if c.starts_with("22") || c.starts_with("23") => {
            StoreError::Invalid(match e {
                pg::Error::Server { message, .. } => message,
                other => other.to_string(),
            })
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Creates the schema if this instance has not done so yet.
async fn ensure_schema(pool: &Pool) -> Result<(), StoreError> {
    if SCHEMA_READY.with(Cell::get) {
        return Ok(());
    }
    pool.run(&Request::Simple(SCHEMA)).await.map_err(unavailable)?;
    SCHEMA_READY.with(|r| r.set(true));
    Ok(())
}

/// Runs one statement with bound parameters, after making sure the schema exists.
async fn query(sql: &str, params: &[Option<&str>]) -> Result<pg::Reply, StoreError> {
    let pool = pool()?;
    ensure_schema(&pool).await?;
    pool.run(&Request::Query(sql, params)).await.map_err(unavailable)
}

fn invalid<T>(message: String) -> Result<T, StoreError> {
    Err(StoreError::Invalid(message))
}

/// A trimmed, non-empty text of at most `max` characters without control characters.
fn text(field: &str, value: &str, max: usize) -> Result<String, StoreError> {
    let v = value.trim();
    let n = v.chars().count();
    if n == 0 {
        return invalid(format!("{field}: must not be empty"));
    }
    if n > max {
        return invalid(format!("{field}: {n} characters; at most {max} allowed"));
    }
    if v.chars().any(char::is_control) {
        return invalid(format!("{field}: must not contain control characters"));
    }
    Ok(v.to_string())
}

fn tag(value: &str) -> Result<String, StoreError> {
    let ok = (1..=MAX_TAG).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return invalid(format!(
            "tag {value:?}: must be 1 to {MAX_TAG} of a-z, 0-9 and -"
        ));
    }
    Ok(value.to_string())
}

fn todo_from_row(row: &[Option<String>]) -> Result<Todo, StoreError> {
    let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let id = col(0)
        .parse()
        .map_err(|_| StoreError::Unavailable(format!("bad id {:?} from the database", col(0))))?;
    let tags = col(4);
    Ok(Todo {
        id,
        title: col(1),
        done: col(2) == "t",
        list_name: col(3),
        tags: if tags.is_empty() {
            Vec::new()
        } else {
            tags.split(',').map(str::to_string).collect()
        },
        created_at: col(5),
    })
}

struct Db;

export!(Db);

impl exports::wasi::cli::run::Guest for Db {
    async fn run() -> Result<(), ()> {
        let pool = match STATE.with(Clone::clone) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("todo-db: bad configuration: {e}");
                return Err(());
            }
        };
        let mode = match pool.mode {
            Mode::Pooled => "pooled",
            Mode::PerCall => "per-call",
        };
        println!(
            "todo-db: up to {} connections ({mode}) to {} as {} on database {}",
            pool.max, pool.cfg.addr, pool.cfg.user, pool.cfg.database
        );
        let mut backoff_ms = 250u64;
        let mut last = String::new();
        loop {
            match ensure_schema(&pool).await {
                Ok(()) => break,
                Err(e) => {
                    let why = match e {
                        StoreError::Invalid(m) | StoreError::Unavailable(m) => m,
                        StoreError::NotFound => "not found".into(),
                    };
                    if why != last {
                        eprintln!("todo-db: cannot create the schema yet (retrying): {why}");
                        last = why;
                    }
                    wasi::clocks::monotonic_clock::wait_for(backoff_ms * 1_000_000).await;
                    backoff_ms = (backoff_ms * 2).min(5_000);
                }
            }
        }
        println!("todo-db: schema ready");
        loop {
            wasi::clocks::monotonic_clock::wait_for(3_600_000_000_000).await;
        }
    }
}

impl store::Guest for Db {
    async fn add(item: NewTodo) -> Result<Todo, StoreError> {
        let title = text("title", &item.title, MAX_TITLE)?;
        let list = text("list", &item.list_name, MAX_LIST)?;
        if item.tags.len() > MAX_TAGS {
            return invalid(format!(
                "tags: {} given; at most {MAX_TAGS} allowed",
                item.tags.len()
            ));
        }
        let mut tags = item.tags.iter().map(|t| tag(t)).collect::<Result<Vec<_>, _>>()?;
        tags.sort();
        tags.dedup();
        // Tags are `a-z0-9-` only, so a comma-joined list splits back exactly.
        let tags = tags.join(",");
        let sql = format!(
            "WITH l AS (
               INSERT INTO lists (name) VALUES ($2::text)
               ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id, name
             ), t AS (
               INSERT INTO todos (title, list_id) SELECT $1::text, l.id FROM l
               RETURNING id, title, done, list_id, created_at
             ), g AS (
               INSERT INTO tags (name) SELECT DISTINCT unnest(string_to_array(NULLIF($3::text, ''), ','))
               ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id, name
             ), x AS (
               INSERT INTO todo_tags (todo_id, tag_id) SELECT t.id, g.id FROM t, g
             )
             SELECT t.id, t.title, t.done, l.name,
               coalesce((SELECT string_agg(g.name, ',' ORDER BY g.name) FROM g), ''),
               to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM t JOIN l ON l.id = t.list_id"
        );
        let reply = query(&sql, &[Some(&title), Some(&list), Some(&tags)]).await?;
        match reply.rows.first() {
            Some(row) => todo_from_row(row),
            None => Err(StoreError::Unavailable("the insert returned no row".into())),
        }
    }

    async fn query(filter: Filter) -> Result<Vec<Todo>, StoreError> {
        let done = match filter.status {
            Status::All => None,
            Status::Open => Some("false"),
            Status::Done => Some("true"),
        };
        let list = filter
            .list_name
            .as_deref()
            .map(|l| text("list", l, MAX_LIST))
            .transpose()?;
        let tag = filter.tag.as_deref().map(tag).transpose()?;
        let search = filter
            .search
            .as_deref()
            .map(|s| text("search", s, MAX_SEARCH))
            .transpose()?;
        // Joins: each todo with its list; the tag filter joins the todo's tags.
        let sql = format!(
            "SELECT {TODO_COLUMNS}
             FROM todos t JOIN lists l ON l.id = t.list_id
             WHERE ($1::boolean IS NULL OR t.done = $1::boolean)
               AND ($2::text IS NULL OR l.name = $2::text)
               AND ($3::text IS NULL OR EXISTS (
                     SELECT 1 FROM todo_tags x JOIN tags g ON g.id = x.tag_id
                     WHERE x.todo_id = t.id AND g.name = $3::text))
               AND ($4::text IS NULL OR strpos(lower(t.title), lower($4::text)) > 0)
             ORDER BY t.done, t.id DESC
             LIMIT {MAX_ROWS}"
        );
        let reply = query(
            &sql,
            &[done, list.as_deref(), tag.as_deref(), search.as_deref()],
        )
        .await?;
        reply.rows.iter().map(|r| todo_from_row(r)).collect()
    }

    async fn set_done(id: i64, done: bool) -> Result<Todo, StoreError> {
        let sql = format!(
            "WITH t AS (
               UPDATE todos SET done = $2::boolean WHERE id = $1::bigint
               RETURNING id, title, done, list_id, created_at
             )
             SELECT {TODO_COLUMNS} FROM t JOIN lists l ON l.id = t.list_id"
        );
        let id = id.to_string();
        let done = if done { "true" } else { "false" };
        let reply = query(&sql, &[Some(&id), Some(done)]).await?;
        match reply.rows.first() {
            Some(row) => todo_from_row(row),
            None => Err(StoreError::NotFound),
        }
    }

    async fn remove(id: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        let reply = query("DELETE FROM todos WHERE id = $1::bigint", &[Some(&id)]).await?;
        if reply.affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn lists() -> Result<Vec<ListCount>, StoreError> {
        let reply = query(
            "SELECT l.name, count(*) FILTER (WHERE NOT t.done), count(*)
             FROM lists l JOIN todos t ON t.list_id = l.id
             GROUP BY l.name ORDER BY l.name",
            &[],
        )
        .await?;
        Ok(reply
            .rows
            .iter()
            .map(|r| {
                let col = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                ListCount {
                    name: col(0),
                    open: col(1).parse().unwrap_or(0),
                    total: col(2).parse().unwrap_or(0),
                }
            })
            .collect())
    }

    fn stats() -> PoolStats {
        match STATE.with(Clone::clone) {
            Ok(pool) => PoolStats {
                mode: match pool.mode {
                    Mode::Pooled => "pooled".into(),
                    Mode::PerCall => "per-call".into(),
                },
                max: pool.max,
                open: pool.open(),
                idle: pool.idle(),
                waiting: pool.waiting(),
                opened_total: pool.opened_total.get(),
                discarded_total: pool.discarded_total.get(),
                schema_ready: SCHEMA_READY.with(Cell::get),
                last_error: pool.last_error.borrow().clone(),
            },
            Err(e) => PoolStats {
                mode: "unconfigured".into(),
                max: 0,
                open: 0,
                idle: 0,
                waiting: 0,
                opened_total: 0,
                discarded_total: 0,
                schema_ready: false,
                last_error: Some(e),
            },
        }
    }
}
