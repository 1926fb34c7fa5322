//! Property tests: parsing never panics, printing round-trips, "did you mean" finds typos, and
//! name validation agrees with a plain reference predicate.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use weft_manifest::*;

const SOURCE: &str = "gen.yaml";

// ---------- generators of valid manifests ----------

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?"
}

/// Strings that stress YAML quoting: lookalikes of other types, indicators, whitespace,
/// unicode, newlines.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("yes".to_string()),
        Just("No".to_string()),
        Just("null".to_string()),
        Just("~".to_string()),
        Just("true".to_string()),
        Just("0x1F".to_string()),
        Just("0755".to_string()),
        Just("1e3".to_string()),
        Just(".nan".to_string()),
        Just("- item".to_string()),
        Just("a: b".to_string()),
        Just("#comment".to_string()),
        Just("'single'".to_string()),
        Just("\"double\"".to_string()),
        Just("*alias".to_string()),
        Just("&anchor".to_string()),
        Just("!tag".to_string()),
        Just("---".to_string()),
        Just("line\nbreak".to_string()),
        Just(" padded ".to_string()),
        Just("tab\there".to_string()),
        Just("héllo wörld ☃".to_string()),
        "[a-zA-Z0-9 _.:/-]{0,12}",
        "\\PC{0,12}",
        any::<String>().prop_map(|s| s.chars().take(16).collect()),
    ]
}

fn string_map(
    keys: impl Strategy<Value = String>,
) -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(keys, tricky_string(), 0..4)
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(
        "([a-z]{1,6}\\.[a-z]{2,3}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,8}[A-Za-z0-9])?",
        "([A-Za-z0-9]([A-Za-z0-9._-]{0,8}[A-Za-z0-9])?)?",
        0..3,
    )
}

fn image() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\./[a-z0-9_-]{1,8}\\.wasm",
        "[a-z]{1,6}/[a-z0-9]{1,6}\\.wat",
        "file:///[a-z]{1,8}/[a-z]{1,8}\\.wasm",
        "file://\\./[a-z]{1,8}\\.wasm",
    ]
}

fn allowed_host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        "[a-z]{1,8}\\.(com|dev|localhost)",
        "[a-z]{1,8}\\.com:(443|8080|\\*)",
        "(http|https)://[a-z]{1,8}\\.example\\.com(:[1-9][0-9]{0,3})?",
        "\\*\\.[a-z]{1,8}\\.com",
        "\\[::1\\]:[1-9][0-9]{0,3}",
        "10\\.[0-9]{1,2}\\.0\\.1",
    ]
}

#[derive(Debug, Clone)]
struct RawUnit {
    name: String,
    image: String,
    digest: Option<String>,
    pool_size: u32,
    max_invocations: u32,
    max_concurrency: u32,
    links: Vec<(String, usize)>,
    resources: RawResources,
}

#[derive(Debug, Clone)]
struct RawResources {
    memory_limit_mb: Option<u32>,
    timeout_ms: Option<u64>,
    config: BTreeMap<String, String>,
    environment: BTreeMap<String, String>,
    mounts: Vec<(usize, String, bool)>,
    allowed_hosts: Vec<String>,
    sockets: Vec<(u16, Option<u16>, bool)>,
    lookups: Vec<String>,
}

fn raw_resources() -> impl Strategy<Value = RawResources> {
    (
        proptest::option::of(1u32..=65536),
        proptest::option::of(1u64..=u64::MAX),
        string_map("\\PC{1,8}"),
        string_map("[A-Za-z_][A-Za-z0-9_]{0,8}"),
        vec((any::<usize>(), "[a-z]{1,6}", any::<bool>()), 0..3),
        vec(allowed_host(), 0..3),
        vec(
            (
                1u16..=65535,
                proptest::option::of(1u16..=65535),
                any::<bool>(),
            ),
            0..3,
        ),
        vec("(\\*\\.)?[a-z][a-z0-9-]{0,6}(\\.[a-z]{1,4})?|\\*", 0..3),
    )
        .prop_map(
            |(
                memory_limit_mb,
                timeout_ms,
                config,
                environment,
                mounts,
                allowed_hosts,
                sockets,
                lookups,
            )| {
                RawResources {
                    memory_limit_mb,
                    timeout_ms,
                    config,
                    environment,
                    mounts,
                    allowed_hosts,
                    sockets,
                    lookups,
                }
            },
        )
}

fn raw_unit() -> impl Strategy<Value = RawUnit> {
    (
        dns_label(),
        image(),
        proptest::option::of("sha256:[0-9a-f]{64}"),
        any::<u32>(),
        1u32..=u32::MAX,
        1u32..=u32::MAX,
        vec(
            (
                "[a-z]{1,5}:[a-z]{1,5}/[a-z]{1,5}(@[0-9]\\.[0-9]\\.[0-9])?",
                any::<usize>(),
            ),
            0..3,
        ),
        raw_resources(),
    )
        .prop_map(
            |(
                name,
                image,
                digest,
                pool_size,
                max_invocations,
                max_concurrency,
                links,
                resources,
            )| RawUnit {
                name,
                image,
                digest,
                pool_size,
                max_invocations,
                max_concurrency,
                links,
                resources,
            },
        )
}

fn host_interfaces() -> impl Strategy<Value = Vec<HostInterface>> {
    let per_known = KNOWN_HOST_INTERFACES.iter().map(|k| {
        (
            any::<bool>(),
            proptest::sample::subsequence(k.interfaces.to_vec(), 1..=k.interfaces.len()),
            proptest::option::of(prop_oneof![Just("memory"), Just("redb")]),
            proptest::option::of("[a-z]{1,8}"),
            proptest::option::of("[a-z]{1,8}\\.localhost(:[1-9][0-9]{0,3})?"),
            proptest::option::of("/[a-z/]{0,8}"),
        )
            .prop_map(move |(on, ifaces, backend, bucket, host, path)| {
                if !on {
                    return None;
                }
                let mut config = BTreeMap::new();
                match k.package {
                    "keyvalue" => {
                        if let Some(b) = backend {
                            config.insert("backend".to_string(), b.to_string());
                        }
                        if let Some(b) = bucket {
                            config.insert("bucket".to_string(), b);
                        }
                    }
                    "http" if ifaces.contains(&"incoming-handler") => {
                        if let Some(h) = host {
                            config.insert("host".to_string(), h);
                        }
                        if let Some(p) = path {
                            config.insert("path".to_string(), p);
                        }
                    }
                    "messaging" if k.namespace == "wasmcloud" => {
                        // Subjects from the generated words: `WORD.*`, `WORD.>`, `WORD`.
                        let word = bucket.clone().unwrap_or_else(|| "orders".into());
                        if ifaces.contains(&"handler") {
                            config.insert("subscriptions".to_string(), format!("{word}.*, in.>"));
                            if let Some(b) = backend {
                                config.insert("deadLetter".to_string(), format!("{word}.{b}"));
                            }
                            if host.is_some() {
                                config.insert("queueGroup".to_string(), word.clone());
                                config.insert("maxInFlight".to_string(), "4".to_string());
                            }
                        }
                        if ifaces.contains(&"consumer") {
                            config.insert("publish".to_string(), format!("{word}, out.>"));
                        }
                        if path.is_some() {
                            config.insert("maxMessageBytes".to_string(), "65536".to_string());
                        }
                    }
                    _ => {}
                }
                Some(HostInterface {
                    namespace: k.namespace.to_string(),
                    package: k.package.to_string(),
                    interfaces: ifaces.iter().map(|s| s.to_string()).collect(),
                    config,
                })
            })
    });
    per_known
        .collect::<Vec<_>>()
        .prop_shuffle()
        .prop_map(|v| v.into_iter().flatten().collect())
}

fn build_resources(r: RawResources, volumes: &[Volume]) -> LocalResources {
    let mut volume_mounts = Vec::new();
    if !volumes.is_empty() {
        for (i, (v, path, ro)) in r.mounts.into_iter().enumerate() {
            volume_mounts.push(VolumeMount {
                name: volumes[v % volumes.len()].name.clone(),
                mount_path: format!("/m{i}/{path}"),
                read_only: ro,
            });
        }
    }
    let mut sockets: Vec<Socket> = Vec::new();
    for (port, host_port, udp) in r.sockets {
        let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
        // UDP cannot be redirected.
        let host_port = if udp { None } else { host_port };
        if !sockets
            .iter()
            .any(|s| s.port == port && s.protocol == protocol)
        {
            sockets.push(Socket {
                port,
                host_port,
                protocol,
            });
        }
    }
    LocalResources {
        memory_limit_mb: r.memory_limit_mb,
        timeout_ms: r.timeout_ms,
        config: r.config,
        environment: r.environment,
        volume_mounts,
        allowed_hosts: r.allowed_hosts,
        sockets,
        allowed_ip_name_lookups: r.lookups,
    }
}

fn build_links(raw: Vec<(String, usize)>, me: &str, names: &[String]) -> BTreeMap<String, String> {
    let others: Vec<&String> = names.iter().filter(|n| *n != me).collect();
    let mut links = BTreeMap::new();
    if !others.is_empty() {
        for (iface, t) in raw {
            links.insert(iface, others[t % others.len()].clone());
        }
    }
    links
}

fn valid_manifest() -> impl Strategy<Value = Manifest> {
    (
        any::<bool>(),
        dns_label(),
        proptest::option::of(dns_label()),
        label_map(),
        prop_oneof![
            Just(Compose::Auto),
            Just(Compose::Always),
            Just(Compose::Never)
        ],
        vec(raw_unit(), 0..4),
        proptest::option::of((raw_unit(), any::<u32>())),
        host_interfaces(),
        vec("\\./[a-z]{1,8}|/[a-z]{1,8}/[a-z]{1,8}", 0..3),
        (
            any::<u32>(),
            label_map(),
            proptest::option::of(prop_oneof![Just("zone"), Just("example.com/rack")]),
        ),
    )
        .prop_map(
            |(
                deploy,
                name,
                namespace,
                labels,
                compose,
                units,
                service,
                host_interfaces,
                vols,
                (replicas, selector, spread),
            )| {
                let volumes: Vec<Volume> = vols
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| Volume {
                        name: format!("vol-{i}"),
                        host_path: HostPath { local_path: p },
                    })
                    .collect();
                // Unique names: a suffix per position.
                let names: Vec<String> = units
                    .iter()
                    .enumerate()
                    .map(|(i, u)| format!("{}-c{i}", u.name))
                    .collect();
                let mut components: Vec<Component> = units
                    .into_iter()
                    .zip(&names)
                    .map(|(u, n)| Component {
                        links: build_links(u.links, n, &names),
                        name: n.clone(),
                        image: u.image,
                        digest: u.digest,
                        pool_size: u.pool_size,
                        max_invocations: u.max_invocations,
                        max_concurrency: u.max_concurrency,
                        local_resources: build_resources(u.resources, &volumes),
                        build: None,
                    })
                    .collect();
                let service = service.map(|(u, max_restarts)| {
                    let n = format!("{}-svc", u.name);
                    Service {
                        links: build_links(u.links, &n, &names),
                        name: n,
                        image: u.image,
                        digest: u.digest,
                        pool_size: u.pool_size,
                        max_invocations: u.max_invocations,
                        max_concurrency: u.max_concurrency,
                        local_resources: build_resources(u.resources, &volumes),
                        max_restarts,
                        serve_http: false,
                        build: None,
                    }
                });
                if components.is_empty() && service.is_none() {
                    components.push(Component {
                        name: "only".into(),
                        image: "./only.wasm".into(),
                        max_invocations: 1,
                        max_concurrency: 1,
                        ..Component::default()
                    });
                }
                Manifest {
                    api_version: ApiVersion::V1Alpha1,
                    kind: if deploy {
                        Kind::WorkloadDeployment
                    } else {
                        Kind::Workload
                    },
                    metadata: Metadata {
                        name,
                        namespace: namespace.unwrap_or_else(|| "default".into()),
                        labels,
                    },
                    spec: Spec {
                        compose,
                        components,
                        service,
                        host_interfaces,
                        volumes,
                        replicas: deploy.then_some(replicas),
                        host_selector: deploy.then_some(selector),
                        spread_by: spread.filter(|_| deploy).map(str::to_string),
                    },
                    origin: Origin {
                        path: SOURCE.into(),
                        document: None,
                    },
                }
            },
        )
}

// ---------- reference predicates ----------

fn reference_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn reference_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn base() -> Manifest {
    parse_str(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: base }\nspec:\n  components: [ { name: api, image: ./api.wasm } ]\n  volumes: [ { name: data, hostPath: { localPath: ./d } } ]\n",
        Path::new(SOURCE),
    )
    .expect("base manifest is valid")
    .remove(0)
}

fn name_strings() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,70}",
        "[a-zA-Z0-9_.-]{0,10}",
        "-?[a-z0-9]{0,5}-?",
        "\\PC{0,8}",
    ]
}

/// One random single-character edit of `s`.
fn one_edit(s: &str, op: u8, at: usize, c: char) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    match op % 4 {
        0 => chars.insert(at % (n + 1), c),
        1 if n > 0 => {
            chars.remove(at % n);
        }
        2 if n > 0 => chars[at % n] = c,
        3 if n > 1 => {
            let i = at % (n - 1);
            chars.swap(i, i + 1);
        }
        _ => chars.insert(at % (n + 1), c),
    }
    chars.into_iter().collect()
}

const COMPONENT_FIELDS: &[&str] = &[
    "name",
    "image",
    "digest",
    "poolSize",
    "maxInvocations",
    "maxConcurrency",
    "links",
    "localResources",
];

fn token_soup() -> impl Strategy<Value = String> {
    let tokens = prop_oneof![
        Just("apiVersion: weft.dev/v1alpha1\n"),
        Just("kind: Workload\n"),
        Just("kind: WorkloadDeployment\n"),
        Just("metadata:"),
        Just("spec:"),
        Just("components:"),
        Just("service:"),
        Just("hostInterfaces:"),
        Just("localResources:"),
        Just("sockets:"),
        Just("name: api"),
        Just("image: ./a.wasm"),
        Just("port: 99999"),
        Just("replicas: -1"),
        Just("\n"),
        Just("\n  "),
        Just("\n    - "),
        Just("- "),
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(", "),
        Just(": "),
        Just("---\n"),
        Just("&a "),
        Just("*a"),
        Just("!tag "),
        Just("<<: "),
        Just("\""),
        Just("'"),
        Just("? "),
        Just("|\n"),
        Just("1e400"),
        Just("18446744073709551616"),
        Just("~"),
        Just("\t"),
        Just("\u{feff}"),
    ];
    vec(tokens, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = parse_str(&text, Path::new(SOURCE));
    }

    #[test]
    fn parse_never_panics_on_yaml_like_text(text in token_soup()) {
        if let Err(errs) = parse_str(&text, Path::new(SOURCE)) {
            prop_assert!(!errs.is_empty());
            for e in &errs {
                // Every error renders on one line with its file.
                let shown = e.to_string();
                prop_assert!(shown.starts_with(SOURCE));
                prop_assert!(!shown.contains('\n'), "{shown:?}");
            }
        }
    }

    #[test]
    fn parse_never_panics_on_mangled_manifests(
        m in valid_manifest(),
        json in any::<bool>(),
        cuts in vec((any::<usize>(), 0usize..8, "\\PC{0,3}"), 1..4),
    ) {
        let mut text = if json { to_json(&m).unwrap() } else { to_yaml(&m).unwrap() };
        for (at, len, insert) in cuts {
            let mut chars: Vec<char> = text.chars().collect();
            let start = at % (chars.len() + 1);
            let end = (start + len).min(chars.len());
            chars.splice(start..end, insert.chars());
            text = chars.into_iter().collect();
        }
        let _ = parse_str(&text, Path::new(SOURCE));
    }

    #[test]
    fn generated_manifests_are_valid_and_round_trip(m in valid_manifest()) {
        let errs = validate(&m, None);
        prop_assert!(errs.is_empty(), "{}", ManifestErrors(errs.clone()));

        let yaml = to_yaml(&m).unwrap();
        let parsed = parse_str(&yaml, Path::new(SOURCE));
        prop_assert!(parsed.is_ok(), "{}\n---\n{}", parsed.unwrap_err(), yaml);
        prop_assert_eq!(parsed.unwrap(), vec![m.clone()], "{}", yaml);

        let json = to_json(&m).unwrap();
        let parsed = parse_str(&json, Path::new(SOURCE));
        prop_assert!(parsed.is_ok(), "{}\n---\n{}", parsed.unwrap_err(), json);
        prop_assert_eq!(parsed.unwrap(), vec![m.clone()]);

        prop_assert!(diff(&m, &m).is_empty());
    }

    #[test]
    fn several_documents_round_trip(ms in vec(valid_manifest(), 2..4)) {
        let ms: Vec<Manifest> = ms
            .into_iter()
            .enumerate()
            .map(|(i, mut m)| {
                m.origin.document = Some(i);
                m
            })
            .collect();
        let parsed = parse_str(&to_yaml_all(&ms).unwrap(), Path::new(SOURCE)).unwrap();
        prop_assert_eq!(parsed, ms);
    }

    #[test]
    fn diff_is_empty_exactly_for_equal_specs(a in valid_manifest(), b in valid_manifest()) {
        let d = diff(&a, &b);
        let mut a2 = a.clone();
        a2.origin = b.origin.clone();
        if a2 == b {
            prop_assert!(d.is_empty());
        }
        // Adds in one direction are removes in the other.
        let back = diff(&b, &a);
        let added = d.iter().filter(|c| matches!(c, Change::ComponentAdded { .. })).count();
        let removed_back = back.iter().filter(|c| matches!(c, Change::ComponentRemoved { .. })).count();
        prop_assert_eq!(added, removed_back);
        prop_assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn a_changed_component_shows_in_the_diff(m in valid_manifest(), pool in any::<u32>()) {
        let mut n = m.clone();
        if let Some(c) = n.spec.components.first_mut() {
            let name = c.name.clone();
            let changed = c.pool_size != pool;
            c.pool_size = pool;
            let d = diff(&m, &n);
            if changed {
                prop_assert_eq!(d, vec![Change::ComponentChanged { name, fields: vec!["poolSize".into()] }]);
            } else {
                prop_assert!(d.is_empty());
            }
        }
    }

    #[test]
    fn name_validation_agrees_with_the_reference(s in name_strings()) {
        let expected = reference_dns_label(&s);
        prop_assert_eq!(rules::is_dns_label(&s), expected);

        let mut m = base();
        m.spec.components[0].name = s.clone();
        let errs = validate(&m, None);
        let flagged = errs.iter().any(|e| e.path == "spec.components[0].name" && e.kind == ErrorKind::InvalidValue);
        prop_assert_eq!(flagged, !expected, "{:?}", errs);

        let mut m = base();
        m.metadata.name = s.clone();
        m.spec.volumes[0].name = s.clone();
        m.spec.components[0].local_resources.volume_mounts.push(VolumeMount {
            name: s.clone(),
            mount_path: "/data".into(),
            read_only: false,
        });
        let errs = validate(&m, None);
        prop_assert_eq!(errs.iter().any(|e| e.path == "metadata.name"), !expected);
        prop_assert_eq!(errs.iter().any(|e| e.path == "spec.volumes[0].name"), !expected);
        // The mount names the declared volume, whatever its name.
        prop_assert!(!errs.iter().any(|e| e.kind == ErrorKind::UnknownReference));

        // The same through text: a JSON string is valid in JSON and YAML alike.
        let quoted = serde_json::to_string(&s).unwrap();
        let text = format!(
            "{{\"apiVersion\":\"weft.dev/v1alpha1\",\"kind\":\"Workload\",\"metadata\":{{\"name\":\"a\"}},\"spec\":{{\"components\":[{{\"name\":{quoted},\"image\":\"./a.wasm\"}}]}}}}"
        );
        prop_assert_eq!(parse_str(&text, Path::new(SOURCE)).is_ok(), expected);
        let yaml = format!("apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: a }}\nspec:\n  components:\n    - name: {quoted}\n      image: ./a.wasm\n");
        prop_assert_eq!(parse_str(&yaml, Path::new(SOURCE)).is_ok(), expected);
    }

    #[test]
    fn env_name_validation_agrees_with_the_reference(s in "\\PC{0,6}|[A-Za-z0-9_-]{0,8}") {
        let expected = reference_env_name(&s);
        prop_assert_eq!(rules::is_env_name(&s), expected);
        let mut m = base();
        m.spec.components[0].local_resources.environment.insert(s.clone(), "v".into());
        let flagged = validate(&m, None).iter().any(|e| e.path.contains("localResources.environment"));
        prop_assert_eq!(flagged, !expected);
    }

    #[test]
    fn did_you_mean_finds_single_edit_typos(
        pick in 0usize..COMPONENT_FIELDS.len(),
        op in any::<u8>(),
        at in any::<usize>(),
        c in proptest::char::range('a', 'z'),
    ) {
        let target = COMPONENT_FIELDS[pick];
        let typo = one_edit(target, op, at, c);
        prop_assume!(!COMPONENT_FIELDS.contains(&typo.as_str()));
        let got = did_you_mean(&typo, COMPONENT_FIELDS);
        prop_assert!(got.is_some(), "no suggestion for {typo:?} (from {target})");
        let got = got.unwrap();
        prop_assert!(
            edit_distance(&typo.to_lowercase(), &got.to_lowercase()) <= 1,
            "{typo:?} -> {got:?}"
        );
    }

    #[test]
    fn did_you_mean_answers_from_the_candidates(input in "\\PC{0,12}", cands in vec("[a-zA-Z]{1,10}", 0..6)) {
        let refs: Vec<&str> = cands.iter().map(String::as_str).collect();
        if let Some(s) = did_you_mean(&input, &refs) {
            prop_assert!(refs.contains(&s));
            prop_assert_ne!(s, input.as_str());
        }
        if refs.contains(&input.as_str()) {
            prop_assert_eq!(did_you_mean(&input, &refs), None);
        }
    }

    #[test]
    fn edit_distance_is_a_sane_metric(a in "\\PC{0,10}", b in "\\PC{0,10}") {
        let d = edit_distance(&a, &b);
        let (la, lb) = (a.chars().count(), b.chars().count());
        prop_assert_eq!(d, edit_distance(&b, &a));
        prop_assert_eq!(d == 0, a == b);
        prop_assert!(d <= la.max(lb));
        prop_assert!(d >= la.abs_diff(lb));
        prop_assert_eq!(edit_distance(&a, &a), 0);
    }
}
