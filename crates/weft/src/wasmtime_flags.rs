//! wasmtime's option groups on Weft's command line: `-S` (`--wasi`), `-W` (`--wasm`), `-O`
//! (`--optimize`), `-C` (`--codegen`) and `-D` (`--debug`), with wasmtime 48's syntax, so that
//! `weft run` and `weft serve` take the command lines written for `wasmtime run` and
//! `wasmtime serve` (docs/wasmtime-flags.md has the mapping table).
//!
//! Syntax (as wasmtime's `wasmtime-cli-flags`): each flag's value is a comma-separated list
//! of `key[=value]`; a boolean without a value is `yes` (`y|yes|true`, `n|no|false`); numbers
//! may use `_` and `0x`; durations are `N` (seconds), `Ns`, `Nms`, `Nus`, `Nns`; key-value
//! options take `=NAME=VALUE`. `-S help` (any group) lists what Weft accepts and exits.
//!
//! An option whose meaning Weft has is mapped onto Weft's own setting; an option that names
//! something Weft always does (`-Scli`, `-Sp3`, `-Wcomponent-model-async`...) is accepted
//! when it asks for that and refused when it asks for the opposite; every other option is
//! refused with an error naming it and saying why.

use std::time::Duration;

/// The settings wasmtime-style options asked for. `None`: not given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WasmtimeFlags {
    /// `-W timeout=D`.
    pub timeout: Option<Duration>,
    /// `-W max-memory-size=N`.
    pub max_memory_size: Option<u64>,
    /// `-S inherit-network`.
    pub inherit_network: Option<bool>,
    /// `-S tcp`, `-S udp`, `-S allow-ip-name-lookup`.
    pub tcp: Option<bool>,
    pub udp: Option<bool>,
    pub allow_ip_name_lookup: Option<bool>,
    /// `-S inherit-env`.
    pub inherit_env: Option<bool>,
    /// `-S config` and `-S config-var=NAME=VALUE`.
    pub config: Option<bool>,
    pub config_vars: Vec<(String, String)>,
    /// `-S keyvalue` and `-S keyvalue-in-memory-data=KEY=VALUE`.
    pub keyvalue: Option<bool>,
    pub keyvalue_data: Vec<(String, String)>,
    /// `-S max-resources=N`.
    pub max_resources: Option<usize>,
    /// `-O pooling-allocator`.
    pub pooling_allocator: Option<bool>,
    /// `-C cache`.
    pub cache: Option<bool>,
    /// `-C inlining`.
    pub inlining: Option<bool>,
}

/// An option Weft cannot take, named as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("-{group} {option}: {message}")]
pub struct FlagError {
    /// `S`, `W`, `O`, `C` or `D`.
    pub group: char,
    /// The `key[=value]` as given.
    pub option: String,
    pub message: String,
}

/// Which of Weft's commands the options are for (a few mean something only for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Run,
    Serve,
}

#[derive(Clone, Copy)]
enum Kind {
    /// A boolean Weft maps onto a setting.
    Bool,
    /// A boolean for something Weft always does: `y` accepted, `n` refused with the reason.
    AlwaysOn(&'static str),
    Duration,
    Size,
    Count,
    KeyValue,
    /// Refused whatever the value, with the reason.
    Unsupported(&'static str),
}

const ALWAYS_COMPONENTS: &str = "Weft always enables the component model";
const ALWAYS_ASYNC: &str =
    "Weft always enables component-model async (WASI 0.3 components run everywhere)";

/// (group, key, kind, what it maps to in Weft): the table `-S help` prints and
/// docs/wasmtime-flags.md repeats.
const OPTIONS: &[(char, &str, Kind, &str)] = &[
    (
        'S',
        "cli",
        Kind::AlwaysOn("weft links wasi:cli (with nothing granted) for every component"),
        "always on",
    ),
    (
        'S',
        "common",
        Kind::AlwaysOn("weft links wasi:cli (with nothing granted) for every component"),
        "always on (alias of cli)",
    ),
    (
        'S',
        "http",
        Kind::AlwaysOn(
            "weft links wasi:http for every component (outgoing requests need --allow-host)",
        ),
        "always on; outgoing requests need --allow-host",
    ),
    (
        'S',
        "p3",
        Kind::AlwaysOn("weft links WASI 0.3 for every component"),
        "always on",
    ),
    (
        'S',
        "cli-exit-with-code",
        Kind::AlwaysOn("weft links wasi:cli/exit's exit-with-code"),
        "always on",
    ),
    ('S', "inherit-network", Kind::Bool, "--inherit-network"),
    (
        'S',
        "tcp",
        Kind::Bool,
        "TCP sockets on (default) or off (without --inherit-network: creating one)",
    ),
    (
        'S',
        "udp",
        Kind::Bool,
        "UDP sockets on (default) or off (without --inherit-network: creating one)",
    ),
    (
        'S',
        "allow-ip-name-lookup",
        Kind::Bool,
        "with --inherit-network: name lookups on (default) or off",
    ),
    (
        'S',
        "inherit-env",
        Kind::Bool,
        "every host environment variable (then --env)",
    ),
    ('S', "config", Kind::Bool, "link wasi:config/store"),
    ('S', "config-var", Kind::KeyValue, "a wasi:config variable"),
    (
        'S',
        "keyvalue",
        Kind::Bool,
        "link wasi:keyvalue (store, atomics, batch), in memory",
    ),
    (
        'S',
        "keyvalue-in-memory-data",
        Kind::KeyValue,
        "a key preset in the in-memory bucket",
    ),
    (
        'S',
        "max-resources",
        Kind::Count,
        "resource handles per instance",
    ),
    (
        'S',
        "inherit-stdin",
        Kind::AlwaysOn("weft run gives the guest the host's stdin"),
        "always on for weft run",
    ),
    (
        'S',
        "inherit-stdout",
        Kind::AlwaysOn("weft passes the guest's stdout through"),
        "always on",
    ),
    (
        'S',
        "inherit-stderr",
        Kind::AlwaysOn("weft passes the guest's stderr through"),
        "always on",
    ),
    (
        'S',
        "nn",
        Kind::Unsupported("wasi-nn is not supported"),
        "refused",
    ),
    (
        'S',
        "nn-graph",
        Kind::Unsupported("wasi-nn is not supported"),
        "refused",
    ),
    (
        'S',
        "threads",
        Kind::Unsupported("wasi-threads is not supported"),
        "refused",
    ),
    (
        'S',
        "tls",
        Kind::Unsupported("wasi-tls is not supported"),
        "refused",
    ),
    (
        'S',
        "listenfd",
        Kind::Unsupported("only wasmtime's legacy preview 1 implementation has it"),
        "refused",
    ),
    (
        'S',
        "tcplisten",
        Kind::Unsupported(
            "only wasmtime's legacy preview 1 implementation has it; grant sockets with --inherit-network",
        ),
        "refused",
    ),
    (
        'S',
        "preview2",
        Kind::AlwaysOn("weft runs preview 1 modules through the preview 2 implementation"),
        "always on",
    ),
    (
        'S',
        "preview0",
        Kind::Unsupported("weft does not run preview 0 (`wasi_unstable`) modules"),
        "refused",
    ),
    (
        'S',
        "network-error-code",
        Kind::Unsupported("the unstable network-error-code API is not linked"),
        "refused",
    ),
    (
        'S',
        "cwd",
        Kind::Unsupported("weft does not set a current directory for the guest"),
        "refused",
    ),
    (
        'S',
        "hostcall-fuel",
        Kind::Unsupported("weft keeps wasmtime's default hostcall fuel"),
        "refused",
    ),
    (
        'S',
        "max-component-handles",
        Kind::Unsupported("weft keeps wasmtime's default; use -Smax-resources"),
        "refused",
    ),
    (
        'S',
        "max-random-size",
        Kind::Unsupported("weft keeps wasmtime's default"),
        "refused",
    ),
    (
        'S',
        "max-http-fields-size",
        Kind::Unsupported("weft keeps wasmtime's default"),
        "refused",
    ),
    (
        'S',
        "http-outgoing-body-buffer-chunks",
        Kind::Unsupported("weft keeps wasmtime's default"),
        "refused",
    ),
    (
        'S',
        "http-outgoing-body-chunk-size",
        Kind::Unsupported("weft keeps wasmtime's default"),
        "refused",
    ),
    ('W', "timeout", Kind::Duration, "--timeout"),
    ('W', "max-memory-size", Kind::Size, "--max-memory"),
    (
        'W',
        "component-model",
        Kind::AlwaysOn(ALWAYS_COMPONENTS),
        "always on",
    ),
    (
        'W',
        "component-model-async",
        Kind::AlwaysOn(ALWAYS_ASYNC),
        "always on",
    ),
    (
        'W',
        "epoch-interruption",
        Kind::AlwaysOn("weft always interrupts guests by epoch (every 10 ms)"),
        "always on",
    ),
    (
        'W',
        "fuel",
        Kind::Unsupported(
            "weft bounds CPU by wall clock (--timeout) with epoch interruption, not fuel",
        ),
        "refused",
    ),
    (
        'O',
        "pooling-allocator",
        Kind::Bool,
        "--allocator pooling (y) or on-demand (n)",
    ),
    ('C', "cache", Kind::Bool, "n: --no-cache"),
    ('C', "inlining", Kind::Bool, "--inline"),
    (
        'C',
        "parallel-compilation",
        Kind::AlwaysOn("weft always compiles in parallel"),
        "always on",
    ),
];

/// Parses the values of every `-S`, `-W`, `-O`, `-C` and `-D` flag (each `(group, value)` in
/// command-line order). Later options override earlier ones, as in wasmtime.
pub fn parse(values: &[(char, String)], command: Command) -> Result<WasmtimeFlags, FlagError> {
    let mut flags = WasmtimeFlags::default();
    for (group, value) in values {
        for item in value.split(',') {
            apply(&mut flags, *group, item, command)?;
        }
    }
    Ok(flags)
}

fn apply(
    flags: &mut WasmtimeFlags,
    group: char,
    item: &str,
    command: Command,
) -> Result<(), FlagError> {
    let err = |message: String| FlagError {
        group,
        option: item.to_string(),
        message,
    };
    let (key, value) = match item.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (item, None),
    };
    let Some(&(_, _, kind, _)) = OPTIONS.iter().find(|(g, k, ..)| *g == group && *k == key) else {
        let known: Vec<&str> = OPTIONS
            .iter()
            .filter(|(g, ..)| *g == group)
            .map(|(_, k, ..)| *k)
            .collect();
        return Err(err(if known.is_empty() {
            format!(
                "weft has no -{group} options (`-{group} help` lists them; docs/wasmtime-flags.md)"
            )
        } else {
            format!(
                "not an option weft takes (weft's -{group} options: {}; `-{group} help`)",
                known.join(", ")
            )
        }));
    };
    match kind {
        Kind::Unsupported(why) => Err(err(format!("not supported: {why}"))),
        Kind::AlwaysOn(why) => match parse_bool(value).map_err(err)? {
            true => Ok(()),
            false => Err(err(format!("cannot be turned off: {why}"))),
        },
        Kind::Bool => {
            let v = Some(parse_bool(value).map_err(err)?);
            match key {
                "inherit-network" => flags.inherit_network = v,
                "tcp" => flags.tcp = v,
                "udp" => flags.udp = v,
                "allow-ip-name-lookup" => flags.allow_ip_name_lookup = v,
                "inherit-env" => flags.inherit_env = v,
                "config" => flags.config = v,
                "keyvalue" => flags.keyvalue = v,
                "pooling-allocator" => flags.pooling_allocator = v,
                "cache" => flags.cache = v,
                "inlining" => flags.inlining = v,
                _ => return Err(err("internal: unmapped option".into())),
            }
            Ok(())
        }
        Kind::Duration => {
            flags.timeout = Some(parse_duration(value).map_err(err)?);
            Ok(())
        }
        Kind::Size => {
            flags.max_memory_size = Some(parse_number(value).map_err(err)?);
            Ok(())
        }
        Kind::Count => {
            let n = parse_number(value).map_err(err)?;
            flags.max_resources = Some(usize::try_from(n).map_err(|_| err("too large".into()))?);
            Ok(())
        }
        Kind::KeyValue => {
            let Some(v) = value else {
                return Err(err(format!("needs a value: -{group} {key}=NAME=VALUE")));
            };
            let (name, val) = v.split_once('=').unwrap_or((v, ""));
            if name.is_empty() {
                return Err(err(format!("needs a name: -{group} {key}=NAME=VALUE")));
            }
            let pair = (name.to_string(), val.to_string());
            if key == "config-var" {
                flags.config_vars.push(pair);
            } else if command == Command::Run || command == Command::Serve {
                flags.keyvalue_data.push(pair);
            }
            Ok(())
        }
    }
}

fn parse_bool(value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("y" | "yes" | "true") => Ok(true),
        Some("n" | "no" | "false") => Ok(false),
        Some(other) => Err(format!(
            "`{other}` is not a boolean (y, yes, true, n, no, false)"
        )),
    }
}

fn parse_number(value: Option<&str>) -> Result<u64, String> {
    let v = value.ok_or("needs a value: KEY=N")?.replace('_', "");
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("`{v}` is not a number"))
}

fn parse_duration(value: Option<&str>) -> Result<Duration, String> {
    let s = value.ok_or("needs a value: timeout=N|Ns|Nms|Nus|Nns")?;
    let num = |n: &str| n.parse::<u64>().ok();
    if let Some(n) = num(s) {
        return Ok(Duration::from_secs(n));
    }
    let parsed = if let Some(n) = s.strip_suffix("ms").and_then(num) {
        Some(Duration::from_millis(n))
    } else if let Some(n) = s.strip_suffix("us").or(s.strip_suffix("μs")).and_then(num) {
        Some(Duration::from_micros(n))
    } else if let Some(n) = s.strip_suffix("ns").and_then(num) {
        Some(Duration::from_nanos(n))
    } else {
        s.strip_suffix('s').and_then(num).map(Duration::from_secs)
    };
    parsed.ok_or_else(|| format!("`{s}` is not a duration (N, Ns, Nms, Nus, Nns)"))
}

/// The `-X help` text: what Weft accepts in group `group`.
pub fn help(group: char) -> String {
    let mut out =
        format!("weft's -{group} options (wasmtime syntax; see docs/wasmtime-flags.md):\n\n");
    for (g, key, kind, maps) in OPTIONS {
        if *g != group {
            continue;
        }
        let val = match kind {
            Kind::Bool | Kind::AlwaysOn(_) => "[=y|n]",
            Kind::Duration => "=N|Ns|Nms",
            Kind::Size | Kind::Count => "=N",
            Kind::KeyValue => "=NAME=VALUE",
            Kind::Unsupported(_) => "",
        };
        out.push_str(&format!("  -{group} {key}{val:<12} {maps}\n"));
    }
    if !OPTIONS.iter().any(|(g, ..)| *g == group) {
        out.push_str("  (none: every option of this group is refused)\n");
    }
    out
}

/// Every option in the table: `(group, key, maps to)`, for docs and tests.
pub fn table() -> Vec<(char, &'static str, &'static str)> {
    OPTIONS.iter().map(|(g, k, _, m)| (*g, *k, *m)).collect()
}

/// A request header `--header` (wasmtime serve's `-H`) sets: `NAME: VALUE`, or `@FILE` with
/// one such line per line (blank lines skipped).
pub fn parse_headers(
    args: &[String],
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    let mut out = Vec::new();
    for arg in args {
        if let Some(path) = arg.strip_prefix('@') {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--header @{path}: cannot read the header file: {e}"))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                out.push(parse_header(line).map_err(|e| format!("--header @{path}: {e}"))?);
            }
        } else {
            out.push(parse_header(arg).map_err(|e| format!("--header: {e}"))?);
        }
    }
    Ok(out)
}

fn parse_header(line: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("`{line}` is missing `:` (expected `NAME: VALUE`)"))?;
    let name = http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{line}`: invalid header name"))?;
    let value = http::HeaderValue::from_str(value.trim_start())
        .map_err(|_| format!("`{line}`: invalid header value"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(values: &[(char, &str)]) -> Result<WasmtimeFlags, FlagError> {
        let v: Vec<(char, String)> = values.iter().map(|(g, s)| (*g, s.to_string())).collect();
        parse(&v, Command::Serve)
    }

    #[test]
    fn wasmtime_docs_command_lines_parse() {
        // From wasmtime's docs and test suite.
        let f = p(&[
            ('S', "cli"),
            ('S', "p3"),
            ('S', "http"),
            ('W', "component-model-async"),
        ])
        .unwrap();
        assert_eq!(f, WasmtimeFlags::default());
        let f = p(&[
            ('S', "config"),
            ('S', "config-var=K=V"),
            ('S', "config-var=url=http://x/?a=b"),
        ])
        .unwrap();
        assert_eq!(f.config, Some(true));
        assert_eq!(
            f.config_vars,
            vec![
                ("K".into(), "V".into()),
                ("url".into(), "http://x/?a=b".into())
            ]
        );
        let f = p(&[
            ('S', "keyvalue"),
            ('S', "keyvalue-in-memory-data=hello=world"),
        ])
        .unwrap();
        assert_eq!(f.keyvalue_data, vec![("hello".into(), "world".into())]);
        let f = p(&[
            ('S', "inherit-network,tcp=n,allow-ip-name-lookup=yes"),
            ('S', "inherit-env"),
        ])
        .unwrap();
        assert_eq!(
            (
                f.inherit_network,
                f.tcp,
                f.allow_ip_name_lookup,
                f.inherit_env
            ),
            (Some(true), Some(false), Some(true), Some(true))
        );
        let f = p(&[
            ('W', "timeout=2s"),
            ('W', "max-memory-size=0x1000_0000"),
            ('S', "max-resources=1_000"),
        ])
        .unwrap();
        assert_eq!(f.timeout, Some(Duration::from_secs(2)));
        assert_eq!(f.max_memory_size, Some(0x1000_0000));
        assert_eq!(f.max_resources, Some(1000));
        assert_eq!(
            p(&[('W', "timeout=250ms")]).unwrap().timeout,
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            p(&[('W', "timeout=3")]).unwrap().timeout,
            Some(Duration::from_secs(3))
        );
        let f = p(&[('O', "pooling-allocator=n"), ('C', "cache=no,inlining")]).unwrap();
        assert_eq!(
            (f.pooling_allocator, f.cache, f.inlining),
            (Some(false), Some(false), Some(true))
        );
        // Later wins.
        assert_eq!(
            p(&[('W', "timeout=1"), ('W', "timeout=2")])
                .unwrap()
                .timeout,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn refusals_name_the_option_and_the_reason() {
        let e = p(&[('S', "tls")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "-S tls: not supported: wasi-tls is not supported"
        );
        let e = p(&[('S', "cli=n")]).unwrap_err();
        assert!(
            e.to_string().starts_with("-S cli=n: cannot be turned off"),
            "{e}"
        );
        let e = p(&[('W', "fuel=1000")]).unwrap_err();
        assert!(
            e.to_string().contains("fuel") && e.to_string().contains("--timeout"),
            "{e}"
        );
        let e = p(&[('S', "frobnicate")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("-S frobnicate: not an option weft takes"),
            "{e}"
        );
        assert!(
            e.to_string().contains("inherit-network"),
            "lists what is accepted: {e}"
        );
        let e = p(&[('W', "simd=n")]).unwrap_err();
        assert!(e.to_string().starts_with("-W simd=n"), "{e}");
        let e = p(&[('D', "debug-info")]).unwrap_err();
        assert!(e.to_string().contains("weft has no -D options"), "{e}");
        assert!(
            p(&[('S', "inherit-network=maybe")])
                .unwrap_err()
                .to_string()
                .contains("not a boolean")
        );
        assert!(
            p(&[('W', "timeout=soon")])
                .unwrap_err()
                .to_string()
                .contains("not a duration")
        );
        assert!(
            p(&[('S', "config-var")])
                .unwrap_err()
                .to_string()
                .contains("NAME=VALUE")
        );
        assert!(
            p(&[('S', "max-resources=-1")])
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
    }

    #[test]
    fn headers() {
        let h = parse_headers(&["x-a: 1".into(), "X-B:two words ".into()]).unwrap();
        assert_eq!(h[0].0.as_str(), "x-a");
        assert_eq!(h[1].1.to_str().unwrap(), "two words ");
        assert!(
            parse_headers(&["x-a=1".into()])
                .unwrap_err()
                .contains("missing `:`")
        );
        assert!(
            parse_headers(&["bad name: 1".into()])
                .unwrap_err()
                .contains("invalid header name")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.txt");
        std::fs::write(&file, "x-one: 1\n\nx-two: 2\n").unwrap();
        let h = parse_headers(&[format!("@{}", file.display())]).unwrap();
        assert_eq!(h.len(), 2);
        assert!(
            parse_headers(&["@/nonexistent/h".into()])
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn help_lists_every_option_of_a_group() {
        let h = help('S');
        for (g, k, _) in table() {
            if g == 'S' {
                assert!(h.contains(&format!("-S {k}")), "{k}");
            }
        }
    }

    proptest! {
        /// Any value list parses or fails with an error naming one of its items; never panics.
        #[test]
        fn parse_is_total(items in prop::collection::vec(
            (prop::sample::select(vec!['S', 'W', 'O', 'C', 'D']), "[a-z=,0-9_-]{0,24}"), 0..4)) {
            let v: Vec<(char, String)> = items.clone();
            if let Err(e) = parse(&v, Command::Run) {
                prop_assert!(items.iter().any(|(g, s)| *g == e.group && s.split(',').any(|i| i == e.option)));
            }
        }
    }
}
