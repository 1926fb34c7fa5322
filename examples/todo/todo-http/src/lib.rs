//! `todo-http`: the todo example's HTTP component (WASI 0.3 `wasi:http/handler`).
//!
//! A fresh instance serves each request; everything it knows comes from the workload's
//! `todo-db` service through the imported `example:todo/store@0.1.0`. It has no sockets, no
//! files and no environment: its world imports only the HTTP types and the store.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the web page (`index.html`, `app.js`, `app.css`: a form, filters and a table that refreshes every 3 s) |
//! | `GET /api/todos?status=all\|open\|done&list=L&tag=T&q=TEXT` | 200, the matching todos (JSON list) |
//! | `POST /api/todos` `{"title": T, "list": L, "tags": [..]}` | 201, the new todo (`list` defaults to `inbox`) |
//! | `PATCH /api/todos/ID` `{"done": true}` | 200, the todo |
//! | `DELETE /api/todos/ID` | 204 |
//! | `GET /api/lists` | 200, `[{"name", "open", "total"}]` |
//! | `GET /api/stats` | 200, the service's pool statistics |
//!
//! Errors are JSON `{"error": "..."}` naming the field: 400 bad input (an unknown query
//! parameter or JSON field, a title over 200 characters, a bad tag), 404, 405, 413 (a body
//! over 16 KiB), 415 (a body that is not `application/json`), 503 when the database is
//! unavailable.

wit_bindgen::generate!({
    path: "../wit",
    world: "example:todo/http",
    generate_all,
});

use example::todo::store::{self, Error as StoreError, Filter, NewTodo, Status, Todo};
use serde::{Deserialize, Serialize};
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response};
use wit_bindgen::StreamResult;

/// Largest request body read, in bytes.
const MAX_BODY: usize = 16 * 1024;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// Everything the page may load: itself, its script and its style; nothing inline.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct App;

export!(App);

/// An HTTP answer before it becomes a `Response`.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
}

impl Reply {
    fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec()),
            extra: Vec::new(),
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &ErrorBody { error: message.into() })
    }

    fn asset(content_type: &'static str, body: &str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.as_bytes().to_vec(),
            extra: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: String) -> Reply {
        self.extra.push((name, value));
        self
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// A todo as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TodoJson {
    id: i64,
    title: String,
    done: bool,
    list: String,
    tags: Vec<String>,
    created_at: String,
}

impl From<Todo> for TodoJson {
    fn from(t: Todo) -> TodoJson {
        TodoJson {
            id: t.id,
            title: t.title,
            done: t.done,
            list: t.list_name,
            tags: t.tags,
            created_at: t.created_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddJson {
    title: String,
    #[serde(default)]
    list: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DoneJson {
    done: bool,
}

#[derive(Serialize)]
struct ListJson {
    name: String,
    open: u32,
    total: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsJson {
    mode: String,
    max: u32,
    open: u32,
    idle: u32,
    waiting: u32,
    opened_total: u64,
    discarded_total: u64,
    schema_ready: bool,
    last_error: Option<String>,
}

fn store_error(e: StoreError) -> Reply {
    match e {
        StoreError::Invalid(m) => Reply::error(400, m),
        StoreError::NotFound => Reply::error(404, "no todo with that id"),
        StoreError::Unavailable(m) => Reply::error(503, format!("database unavailable: {m}")),
    }
}

impl exports::wasi::http::handler::Guest for App {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let reply = route(request).await;
        Ok(respond(reply))
    }
}

async fn route(request: Request) -> Reply {
    let method = request.get_method();
    let pq = request.get_path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = pq.split_once('?').unwrap_or((pq.as_str(), ""));
    let path = path.to_string();
    let query = query.to_string();
    match (method, path.as_str()) {
        (Method::Get, "/") | (Method::Get, "/index.html") => {
            Reply::asset("text/html; charset=utf-8", INDEX_HTML)
        }
        (Method::Get, "/app.js") => Reply::asset("text/javascript; charset=utf-8", APP_JS),
        (Method::Get, "/app.css") => Reply::asset("text/css; charset=utf-8", APP_CSS),
        (Method::Get, "/api/todos") => list_todos(&query).await,
        (Method::Post, "/api/todos") => match read_json::<AddJson>(request).await {
            Ok(add) => add_todo(add).await,
            Err(r) => r,
        },
        (Method::Get, "/api/lists") => match store::lists().await {
            Ok(lists) => Reply::json(
                200,
                &lists
                    .into_iter()
                    .map(|l| ListJson {
                        name: l.name,
                        open: l.open,
                        total: l.total,
                    })
                    .collect::<Vec<_>>(),
            ),
            Err(e) => store_error(e),
        },
        (Method::Get, "/api/stats") => {
            let s = store::stats();
            Reply::json(
                200,
                &StatsJson {
                    mode: s.mode,
                    max: s.max,
                    open: s.open,
                    idle: s.idle,
                    waiting: s.waiting,
                    opened_total: s.opened_total,
                    discarded_total: s.discarded_total,
                    schema_ready: s.schema_ready,
                    last_error: s.last_error,
                },
            )
        }
        (method, p) if p.starts_with("/api/todos/") => {
            let id = match p["/api/todos/".len()..].parse::<i64>() {
                Ok(id) if id > 0 => id,
                _ => return Reply::error(404, format!("no such todo: {p}")),
            };
            match method {
                Method::Patch => match read_json::<DoneJson>(request).await {
                    Ok(d) => match store::set_done(id, d.done).await {
                        Ok(t) => Reply::json(200, &TodoJson::from(t)),
                        Err(e) => store_error(e),
                    },
                    Err(r) => r,
                },
                Method::Delete => match store::remove(id).await {
                    Ok(()) => Reply {
                        status: 204,
                        content_type: "application/json",
                        body: Vec::new(),
                        extra: Vec::new(),
                    },
                    Err(e) => store_error(e),
                },
                _ => Reply::error(405, "use PATCH or DELETE on /api/todos/ID")
                    .with("allow", "PATCH, DELETE".into()),
            }
        }
        (_, "/api/todos") => {
            Reply::error(405, "use GET or POST on /api/todos").with("allow", "GET, POST".into())
        }
        (_, "/" | "/index.html" | "/app.js" | "/app.css" | "/api/lists" | "/api/stats") => {
            Reply::error(405, format!("use GET on {path}")).with("allow", "GET".into())
        }
        _ => Reply::error(404, format!("not found: {path}")),
    }
}

async fn list_todos(query: &str) -> Reply {
    let mut filter = Filter {
        status: Status::All,
        list_name: None,
        tag: None,
        search: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = match decode(v) {
            Some(v) => v,
            None => return Reply::error(400, format!("query parameter {k}: not UTF-8")),
        };
        // An empty value means "any", as the page's empty inputs send it.
        let value = (!v.trim().is_empty()).then_some(v);
        match k {
            "status" => {
                filter.status = match value.as_deref() {
                    None | Some("all") => Status::All,
                    Some("open") => Status::Open,
                    Some("done") => Status::Done,
                    Some(other) => {
                        return Reply::error(
                            400,
                            format!("status {other:?}: expected all, open or done"),
                        );
                    }
                }
            }
            "list" => filter.list_name = value,
            "tag" => filter.tag = value.map(|t| t.trim().to_lowercase()),
            "q" => filter.search = value,
            other => {
                return Reply::error(
                    400,
                    format!("unknown query parameter {other:?}: expected status, list, tag or q"),
                );
            }
        }
    }
    match store::query(filter).await {
        Ok(todos) => Reply::json(
            200,
            &todos.into_iter().map(TodoJson::from).collect::<Vec<_>>(),
        ),
        Err(e) => store_error(e),
    }
}

async fn add_todo(add: AddJson) -> Reply {
    let list = add
        .list
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| "inbox".into());
    let item = NewTodo {
        title: add.title,
        list_name: list,
        tags: add
            .tags
            .iter()
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty())
            .collect(),
    };
    match store::add(item).await {
        Ok(t) => {
            let location = format!("/api/todos/{}", t.id);
            Reply::json(201, &TodoJson::from(t)).with("location", location)
        }
        Err(e) => store_error(e),
    }
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes into `T`.
async fn read_json<T: for<'de> Deserialize<'de>>(request: Request) -> Result<T, Reply> {
    let content_type = request.get_headers().get("content-type");
    let is_json = content_type.iter().any(|v| {
        String::from_utf8_lossy(v)
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(Reply::error(415, "send the body as application/json"));
    }
    let (_done_tx, done_rx) = wit_future::new(|| Ok(()));
    let (mut body, _trailers) = Request::consume_body(request, done_rx);
    let mut data = Vec::new();
    loop {
        let (result, chunk) = body.read(Vec::with_capacity(4096)).await;
        data.extend_from_slice(&chunk);
        if data.len() > MAX_BODY {
            return Err(Reply::error(
                413,
                format!("the body is over {MAX_BODY} bytes"),
            ));
        }
        match result {
            StreamResult::Complete(_) => {}
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
    serde_json::from_slice(&data).map_err(|e| Reply::error(400, format!("body: {e}")))
}

/// Percent-decodes a query value (`+` is a space); `None` if the bytes are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn respond(reply: Reply) -> Response {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[reply.content_type.as_bytes().to_vec()]);
    let _ = headers.set("cache-control", &[b"no-store".to_vec()]);
    let _ = headers.set("x-content-type-options", &[b"nosniff".to_vec()]);
    let _ = headers.set("content-security-policy", &[CSP.as_bytes().to_vec()]);
    for (name, value) in &reply.extra {
        let _ = headers.set(name, &[value.as_bytes().to_vec()]);
    }
    let (mut body_tx, body_rx) = wit_stream::new::<u8>();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    let _ = response.set_status_code(reply.status);
    let body = reply.body;
    wit_bindgen::spawn(async move {
        let _ = body_tx.write_all(body).await;
        drop(body_tx);
        let _ = trailers_tx.write(Ok(None)).await;
    });
    response
}
