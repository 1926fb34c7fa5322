use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use ::redb::ReadableDatabase;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use weft_manifest::{HostInterface, Manifest};

use super::backend::lock;
use super::memory::MemoryStore;
use super::redb::{REDB_STORES, table};
use super::*;
use weft_engine::logs::LogSink;

/// A store type with what the plugins need (the runtime's store has more).
struct TestStore {
    instances: PluginInstances,
    table: ResourceTable,
}

impl PluginView for TestStore {
    fn plugins(&mut self) -> super::super::PluginCtx<'_> {
        super::super::PluginCtx {
            instances: &self.instances,
            table: &mut self.table,
            tracer: None,
            stats: None,
        }
    }
}

/// Records the spans host functions start: (name, attributes, how it ended: `None` while
/// open, `Some(error)` once ended).
#[derive(Default, Clone)]
struct Recorder(Arc<std::sync::Mutex<Vec<RecordedSpan>>>);

type RecordedSpan = (&'static str, Vec<(String, String)>, Option<Option<String>>);

impl Recorder {
    fn take(&self) -> Vec<RecordedSpan> {
        std::mem::take(&mut *self.0.lock().expect("recorder"))
    }
}

impl crate::outbound::OutgoingTracer for Recorder {
    fn start(
        &self,
        _: &mut http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> Box<dyn crate::outbound::OutgoingSpan> {
        unreachable!("keyvalue makes no HTTP requests")
    }
    fn span(
        &self,
        name: &'static str,
        attributes: &[(&'static str, &str)],
    ) -> Box<dyn crate::outbound::HostSpan> {
        let mut spans = self.0.lock().expect("recorder");
        let attributes = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spans.push((name, attributes, None));
        Box::new(RecorderSpan(self.clone(), spans.len() - 1))
    }
}

struct RecorderSpan(Recorder, usize);

impl crate::outbound::HostSpan for RecorderSpan {
    fn end(self: Box<Self>, error: Option<String>) {
        self.0.0.lock().expect("recorder")[self.1].2 = Some(error);
    }
}

#[test]
fn bucket_calls_are_spans_under_the_request_when_traced() {
    use atomics::Host as _;
    use store::{Host as _, HostBucket as _};
    let instance = Instance::new(KvStore::memory_unshared(), "orders");
    let recorder = Recorder::default();
    let tracer: Arc<dyn crate::outbound::OutgoingTracer> = Arc::new(recorder.clone());
    let mut table = ResourceTable::new();
    let stats = Arc::new(weft_stats::WorkloadStats::default());
    let mut v = KeyValueView {
        instance: Some(&instance),
        table: &mut table,
        tracer: Some(&tracer),
        stats: Some(&stats),
    };
    let b = now(v.open("default".into())).unwrap().unwrap();
    let rep = b.rep();
    let b2 = || Resource::<Bucket>::new_borrow(rep);
    now(v.set(b2(), "secret-key".into(), b"secret-value".to_vec()))
        .unwrap()
        .unwrap();
    assert_eq!(now(v.increment(b2(), "n".into(), 2)).unwrap().unwrap(), 2);
    assert!(
        now(v.get(b2(), "x".repeat(MAX_KEY_BYTES + 1)))
            .unwrap()
            .is_err()
    );
    let spans = recorder.take();
    let names: Vec<&str> = spans.iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        ["keyvalue.set", "keyvalue.increment", "keyvalue.get"]
    );
    // Each operation is counted by kind, the refused one too (`weft_keyvalue_operations_total`).
    use weft_stats::KeyvalueOp;
    for (op, n) in [
        (KeyvalueOp::Set, 1),
        (KeyvalueOp::Increment, 1),
        (KeyvalueOp::Get, 1),
        (KeyvalueOp::Delete, 0),
    ] {
        assert_eq!(stats.keyvalue[op as usize].get(), n, "{}", op.name());
    }
    for (name, attributes, ended) in &spans {
        assert!(
            attributes.contains(&("db.namespace".into(), "orders".into())),
            "{name}: {attributes:?}"
        );
        let text = format!("{attributes:?}");
        assert!(
            !text.contains("secret"),
            "{name} shows a key or value: {text}"
        );
        assert!(ended.is_some(), "{name} was not ended");
    }
    assert_eq!(spans[0].2, Some(None), "set succeeded");
    assert!(
        matches!(&spans[2].2, Some(Some(e)) if e.contains("MAX_KEY_BYTES")),
        "the refused get ends with its error: {:?}",
        spans[2].2
    );

    // Not traced: no tracer, no spans, same results.
    let mut v = KeyValueView {
        instance: Some(&instance),
        table: &mut table,
        tracer: None,
        stats: None,
    };
    assert_eq!(
        now(v.get(b2(), "secret-key".into())).unwrap().unwrap(),
        Some(b"secret-value".to_vec())
    );
    assert!(recorder.take().is_empty());
}

/// Runs a bucket or host-function call to completion: the memory and redb backends never wait.
fn now<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// A name no other test uses (memory stores are process-wide by owner).
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    Redb,
}

/// A fresh store of `kind`; the tempdir keeps a redb file alive.
fn fresh(kind: Kind) -> (tempfile::TempDir, KvStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match kind {
        Kind::Memory => KvStore::memory_unshared(),
        Kind::Redb => KvStore::redb(&dir.path().join("kv.redb")).expect("open redb"),
    };
    (dir, store)
}

fn open(store: &KvStore, bucket: &str) -> Bucket {
    Instance::new(store.clone(), bucket)
        .open("default")
        .expect("open default")
}

fn both(test: impl Fn(Kind, &KvStore)) {
    for kind in [Kind::Memory, Kind::Redb] {
        let (_dir, store) = fresh(kind);
        test(kind, &store);
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn other(e: KvError) -> String {
    match e {
        KvError::Other(m) => m,
        e => panic!("expected error::other, got {e:?}"),
    }
}

#[test]
fn get_set_delete_exists() {
    both(|kind, store| {
        let b = open(store, "todo");
        assert_eq!(now(b.get("a")), Ok(None), "{kind:?}");
        assert_eq!(now(b.exists("a")), Ok(false));
        now(b.set("a", b"one".to_vec())).unwrap();
        assert_eq!(now(b.get("a")), Ok(Some(b"one".to_vec())));
        assert_eq!(now(b.exists("a")), Ok(true));
        now(b.set("a", vec![0, 255, 1])).unwrap();
        assert_eq!(now(b.get("a")), Ok(Some(vec![0, 255, 1])), "{kind:?}");
        now(b.set("", Vec::new())).unwrap();
        assert_eq!(now(b.get("")), Ok(Some(Vec::new())), "empty key and value");
        now(b.set("ünïcode ✓", b"x".to_vec())).unwrap();
        assert_eq!(now(b.get("ünïcode ✓")), Ok(Some(b"x".to_vec())));
        now(b.delete("a")).unwrap();
        assert_eq!(now(b.get("a")), Ok(None));
        assert_eq!(now(b.exists("a")), Ok(false));
        now(b.delete("a")).unwrap();
        now(b.delete("never-there")).unwrap();
        // Another handle on the same bucket reads the writes.
        assert_eq!(now(open(store, "todo").get("")), Ok(Some(Vec::new())));
    });
}

#[test]
fn list_keys_pages_in_order() {
    both(|kind, store| {
        let mut b = open(store, "todo");
        assert_eq!(now(b.list_keys(None)), Ok((vec![], None)), "empty bucket");
        let mut all: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
        // Insert in a scrambled order; listing is sorted.
        all.reverse();
        for chunk in all.chunks(MAX_BATCH_KEYS) {
            now(b.set_many(
                chunk
                    .iter()
                    .map(|k| (k.clone(), k.as_bytes().to_vec()))
                    .collect(),
            ))
            .unwrap();
        }
        all.sort();
        let (p1, c1) = now(b.list_keys(None)).unwrap();
        assert_eq!((p1.len(), c1), (1000, Some(1000)), "{kind:?}");
        let (p2, c2) = now(b.list_keys(c1)).unwrap();
        assert_eq!((p2.len(), c2), (1000, Some(2000)));
        let (p3, c3) = now(b.list_keys(c2)).unwrap();
        assert_eq!((p3.len(), c3), (500, None));
        let listed: Vec<String> = [p1, p2.clone(), p3].concat();
        assert_eq!(listed, all);
        // A cursor handed to another handle (no remembered position) gives the same page.
        let mut fresh_handle = open(store, "todo");
        assert_eq!(
            now(fresh_handle.list_keys(Some(1000))).unwrap(),
            (p2, Some(2000))
        );
        // Past the end: empty, no cursor.
        assert_eq!(now(fresh_handle.list_keys(Some(5000))), Ok((vec![], None)));
        assert_eq!(
            now(fresh_handle.list_keys(Some(u64::MAX))),
            Ok((vec![], None))
        );
        // Exactly one page: no cursor.
        now(b.delete_many(all[1000..2000].to_vec())).unwrap();
        now(b.delete_many(all[2000..].to_vec())).unwrap();
        let (p, c) = now(b.list_keys(None)).unwrap();
        assert_eq!((p.len(), c), (1000, None), "{kind:?}");
    });
}

#[test]
fn list_keys_resumes_after_the_last_key_it_returned() {
    both(|kind, store| {
        let mut b = open(store, "todo");
        for k in ["a", "b", "c", "d", "e", "f"] {
            now(b.set(k, vec![1])).unwrap();
        }
        let (p1, c1) = now(b.list_page(None, 3)).unwrap();
        assert_eq!((p1, c1), (strings(&["a", "b", "c"]), Some(3)));
        // Keys inserted before the position are not listed again; the rest follow.
        now(b.set("aa", vec![1])).unwrap();
        now(b.set("cc", vec![1])).unwrap();
        let (p2, c2) = now(b.list_page(c1, 3)).unwrap();
        assert_eq!((p2, c2), (strings(&["cc", "d", "e"]), Some(6)), "{kind:?}");
        let (p3, c3) = now(b.list_page(c2, 3)).unwrap();
        assert_eq!((p3, c3), (strings(&["f"]), None));
        // A cursor the handle did not just hand out is an offset.
        let (p, c) = now(b.list_page(Some(2), 3)).unwrap();
        assert_eq!((p, c), (strings(&["b", "c", "cc"]), Some(5)));
    });
}

#[test]
fn increment_counts_in_decimal_text() {
    both(|kind, store| {
        let b = open(store, "todo");
        assert_eq!(now(b.increment("count", 1)), Ok(1), "{kind:?}");
        assert_eq!(now(b.increment("count", 5)), Ok(6));
        assert_eq!(now(b.get("count")), Ok(Some(b"6".to_vec())));
        assert_eq!(now(b.increment("zero", 0)), Ok(0));
        assert_eq!(now(b.get("zero")), Ok(Some(b"0".to_vec())));
        now(b.set("text", b"42".to_vec())).unwrap();
        assert_eq!(now(b.increment("text", 8)), Ok(50));
        for bad in [&b"abc"[..], b"", b"-1", b"+1", b" 1", b"1.5", &[0xff, 0x31]] {
            now(b.set("bad", bad.to_vec())).unwrap();
            let msg = other(now(b.increment("bad", 1)).unwrap_err());
            assert!(msg.contains("not a counter"), "{kind:?} {bad:?}: {msg}");
            assert_eq!(
                now(b.get("bad")),
                Ok(Some(bad.to_vec())),
                "unchanged on error"
            );
        }
        now(b.set("max", u64::MAX.to_string().into_bytes())).unwrap();
        let msg = other(now(b.increment("max", 1)).unwrap_err());
        assert!(msg.contains("overflows u64"), "{msg}");
        assert_eq!(now(b.increment("max", 0)), Ok(u64::MAX));
        now(b.set("big", b"18446744073709551616".to_vec())).unwrap();
        assert!(other(now(b.increment("big", 1)).unwrap_err()).contains("not a counter"));
    });
}

#[test]
fn increment_is_atomic_across_threads() {
    both(|kind, store| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = open(store, "todo");
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        now(b.increment("n", 1)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            now(open(store, "todo").get("n")),
            Ok(Some(b"100".to_vec())),
            "{kind:?}"
        );
    });
}

#[test]
fn batch_operations() {
    both(|kind, store| {
        let b = open(store, "todo");
        now(b.set_many(vec![
            ("a".into(), b"1".to_vec()),
            ("b".into(), b"2".to_vec()),
            ("c".into(), b"3".to_vec()),
        ]))
        .unwrap();
        assert_eq!(
            now(b.get_many(vec!["c".into(), "x".into(), "a".into(), "a".into()])),
            Ok(vec![
                Some(("c".into(), b"3".to_vec())),
                None,
                Some(("a".into(), b"1".to_vec())),
                Some(("a".into(), b"1".to_vec())),
            ]),
            "{kind:?}"
        );
        assert_eq!(now(b.get_many(vec![])), Ok(vec![]));
        now(b.set_many(vec![])).unwrap();
        now(b.delete_many(vec!["a".into(), "missing".into()])).unwrap();
        assert_eq!(now(b.exists("a")), Ok(false));
        assert_eq!(now(b.exists("b")), Ok(true));
        now(b.delete_many(vec![])).unwrap();
        // Later entries win within one set-many.
        now(b.set_many(vec![
            ("d".into(), b"x".to_vec()),
            ("d".into(), b"y".to_vec()),
        ]))
        .unwrap();
        assert_eq!(now(b.get("d")), Ok(Some(b"y".to_vec())), "{kind:?}");
        // A bucket that was never written.
        let empty = open(store, "empty");
        assert_eq!(now(empty.get_many(vec!["a".into()])), Ok(vec![None]));
        now(empty.delete_many(vec!["a".into()])).unwrap();
    });
}

#[test]
fn batch_limits() {
    both(|kind, store| {
        let b = open(store, "todo");
        let too_many: Vec<String> = (0..=MAX_BATCH_KEYS).map(|i| i.to_string()).collect();
        for e in [
            now(b.get_many(too_many.clone())).unwrap_err(),
            now(b.delete_many(too_many.clone())).unwrap_err(),
            now(b.set_many(too_many.iter().map(|k| (k.clone(), vec![])).collect())).unwrap_err(),
        ] {
            assert!(other(e).contains("MAX_BATCH_KEYS"), "{kind:?}");
        }
        // Nothing of a refused batch was written.
        assert_eq!(now(b.exists("0")), Ok(false));
        // 17 x 1 MiB read back in one call is over the 16 MiB budget.
        now(b.set("big", vec![7; MAX_VALUE_BYTES])).unwrap();
        let msg = other(now(b.get_many(vec!["big".into(); 17])).unwrap_err());
        assert!(msg.contains("MAX_BATCH_READ_BYTES"), "{msg}");
        assert_eq!(now(b.get_many(vec!["big".into(); 16])).unwrap().len(), 16);
    });
}

#[test]
fn key_and_value_limits() {
    both(|kind, store| {
        let mut b = open(store, "todo");
        let max_key = "k".repeat(MAX_KEY_BYTES);
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        now(b.set(&max_key, vec![1])).unwrap();
        assert_eq!(now(b.get(&max_key)), Ok(Some(vec![1])), "{kind:?}");
        let errors = [
            now(b.get(&long_key)).unwrap_err(),
            now(b.set(&long_key, vec![])).unwrap_err(),
            now(b.delete(&long_key)).unwrap_err(),
            now(b.exists(&long_key)).unwrap_err(),
            now(b.increment(&long_key, 1)).unwrap_err(),
            now(b.get_many(vec![long_key.clone()])).unwrap_err(),
            now(b.set_many(vec![(long_key.clone(), vec![])])).unwrap_err(),
            now(b.delete_many(vec![long_key.clone()])).unwrap_err(),
        ];
        for e in errors {
            let msg = other(e);
            assert!(
                msg.contains("MAX_KEY_BYTES") && msg.contains("4097"),
                "{msg}"
            );
        }
        now(b.set("v", vec![0; MAX_VALUE_BYTES])).unwrap();
        assert_eq!(
            now(b.get("v")).unwrap().map(|v| v.len()),
            Some(MAX_VALUE_BYTES)
        );
        for e in [
            now(b.set("v", vec![0; MAX_VALUE_BYTES + 1])).unwrap_err(),
            now(b.set_many(vec![
                ("ok".into(), vec![]),
                ("v".into(), vec![0; MAX_VALUE_BYTES + 1]),
            ]))
            .unwrap_err(),
        ] {
            let msg = other(e);
            assert!(
                msg.contains("MAX_VALUE_BYTES") && msg.contains("1048577"),
                "{msg}"
            );
        }
        assert_eq!(
            now(b.exists("ok")),
            Ok(false),
            "a refused set-many writes nothing"
        );
        assert_eq!(now(b.list_keys(None)).unwrap().0.len(), 2);
    });
}

#[test]
fn memory_store_is_capped() {
    let memory = Arc::new(MemoryStore::default());
    let store = KvStore::from_backend(memory.clone());
    let b = open(&store, "todo");
    let value = vec![0; MAX_VALUE_BYTES];
    let fits = MAX_MEMORY_STORE_BYTES / (MAX_VALUE_BYTES + 3);
    for i in 0..fits {
        now(b.set(&format!("{i:03}"), value.clone())).unwrap();
    }
    // Overwriting in place does not grow it.
    now(b.set("000", value.clone())).unwrap();
    let msg = other(now(b.set("full", value.clone())).unwrap_err());
    assert!(msg.contains("MAX_MEMORY_STORE_BYTES"), "{msg}");
    assert!(now(b.increment("n", 1)).is_ok(), "small writes still fit");
    now(b.delete("001")).unwrap();
    now(b.set("full", value.clone())).unwrap();
    now(b.delete_many((0..fits).map(|i| format!("{i:03}")).collect())).unwrap();
    now(b.delete("full")).unwrap();
    now(b.delete("n")).unwrap();
    assert_eq!(memory.used(), 0, "accounting returns to zero");
}

#[test]
fn open_maps_default_names_to_the_owned_bucket_only() {
    both(|kind, store| {
        let inst = Instance::new(store.clone(), "todo");
        assert_eq!(inst.bucket_name(), "todo");
        now(inst.open("").unwrap().set("k", b"v".to_vec())).unwrap();
        for id in ["", "default", "todo"] {
            assert_eq!(
                now(inst.open(id).unwrap().get("k")),
                Ok(Some(b"v".to_vec())),
                "{kind:?} {id:?}"
            );
        }
        for id in ["someone-else", "Default", "todo ", "other"] {
            assert_eq!(inst.open(id).unwrap_err(), KvError::NoSuchStore, "{id:?}");
        }
        // Buckets of one store are separate tables / maps.
        let other = Instance::new(store.clone(), "other").open("other").unwrap();
        assert_eq!(now(other.get("k")), Ok(None), "{kind:?}");
        now(other.set("k", b"w".to_vec())).unwrap();
        assert_eq!(
            now(inst.open("").unwrap().get("k")),
            Ok(Some(b"v".to_vec()))
        );
    });
}

// --- binding ---------------------------------------------------------------------------

fn manifest(name: &str) -> Manifest {
    let text = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name} }}\n\
         spec:\n  components:\n    - name: api\n      image: ./api.wasm\n"
    );
    weft_manifest::parse_str(&text, Path::new("test.yaml"))
        .expect("test manifest")
        .remove(0)
}

fn grant(interfaces: &[&str], config: &[(&str, &str)]) -> HostInterface {
    HostInterface {
        namespace: "wasi".into(),
        package: "keyvalue".into(),
        interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn bind(
    manifest: &Manifest,
    entry: &HostInterface,
    data_dir: &Path,
) -> Result<Arc<dyn Binding<TestStore>>, PluginError> {
    KeyValuePlugin.bind(&BindContext {
        manifest,
        entry: Some(entry),
        entry_index: Some(1),
        data_dir: data_dir.to_path_buf(),
        logs: LogSink::new(&manifest.metadata.name),
        messaging_stats: Default::default(),
    })
}

fn instance(binding: &Arc<dyn Binding<TestStore>>) -> Option<Instance> {
    let mut instances = PluginInstances::default();
    binding.instance("api", &mut instances);
    instances.keyvalue
}

#[test]
fn memory_binding_is_shared_by_instances_and_versions_of_one_workload() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("mem");
    let m = manifest(&name);
    let entry = grant(&["store", "atomics"], &[]);
    let v1 = bind(&m, &entry, dir.path()).unwrap();
    let a = instance(&v1).unwrap();
    assert_eq!(a.bucket_name(), name, "default bucket: metadata.name");
    now(a.open("default").unwrap().set("k", b"v".to_vec())).unwrap();
    let b = instance(&v1).unwrap();
    assert_eq!(
        now(b.open(&name).unwrap().get("k")),
        Ok(Some(b"v".to_vec()))
    );
    // A new version bound while the old one is live shares the data.
    let v2 = bind(&m, &entry, dir.path()).unwrap();
    v1.unbind();
    assert!(instance(&v1).is_none(), "an unbound binding gives no state");
    let c = instance(&v2).unwrap();
    assert_eq!(now(c.open("").unwrap().get("k")), Ok(Some(b"v".to_vec())));
    // Another workload does not see it, even with the same bucket name.
    let other = bind(
        &manifest(&unique("mem-other")),
        &grant(&["store"], &[("bucket", &name)]),
        dir.path(),
    )
    .unwrap();
    let o = instance(&other).unwrap();
    assert_eq!(o.bucket_name(), name);
    assert_eq!(now(o.open(&name).unwrap().get("k")), Ok(None));
    assert!(
        !dir.path().join("keyvalue").exists(),
        "memory writes no files"
    );
    // Once every version and instance is gone, the data is too.
    drop((a, b, c, v1, v2));
    let v3 = bind(&m, &entry, dir.path()).unwrap();
    assert_eq!(
        now(instance(&v3).unwrap().open("").unwrap().get("k")),
        Ok(None)
    );
}

#[test]
fn redb_binding_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("redb");
    let m = manifest(&name);
    let entry = grant(&["store", "atomics", "batch"], &[("backend", "redb")]);
    let path = dir
        .path()
        .join("keyvalue")
        .join(format!("default.{name}.redb"));
    assert_eq!(redb_path(dir.path(), "default", &name), path);
    {
        let v1 = bind(&m, &entry, dir.path()).unwrap();
        assert!(path.is_file(), "{} created at bind", path.display());
        let b = instance(&v1).unwrap().open("default").unwrap();
        now(b.set("k", b"v".to_vec())).unwrap();
        assert_eq!(now(b.increment("count", 3)), Ok(3));
        v1.unbind();
        // The bucket handle still works after unbind: the store closes with its last user.
        assert_eq!(now(b.increment("count", 1)), Ok(4));
    }
    let abs = std::path::absolute(&path).unwrap();
    assert!(
        lock(&REDB_STORES)
            .get(&abs)
            .is_none_or(|w| w.strong_count() == 0),
        "the database is closed once nobody holds it"
    );
    // "Restart": open the file again.
    let v2 = bind(&m, &entry, dir.path()).unwrap();
    let b = instance(&v2).unwrap().open(&name).unwrap();
    assert_eq!(now(b.get("k")), Ok(Some(b"v".to_vec())));
    assert_eq!(now(b.increment("count", 1)), Ok(5));
    // The file really is a redb database with a table named after the bucket.
    drop(b);
    v2.unbind();
    drop(v2);
    let db = ::redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(table(&name)).unwrap();
    assert_eq!(t.get("count").unwrap().unwrap().value(), b"5");
}

#[test]
fn redb_redeploy_reuses_the_open_database() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("redeploy");
    let m = manifest(&name);
    let entry = grant(&["store"], &[("backend", "redb"), ("bucket", "data")]);
    let v1 = bind(&m, &entry, dir.path()).unwrap();
    let old = instance(&v1).unwrap();
    assert_eq!(old.bucket_name(), "data");
    now(old.open("data").unwrap().set("k", b"1".to_vec())).unwrap();
    // Retire v1 while one of its instances is still running, then deploy v2.
    v1.unbind();
    drop(v1);
    let v2 = bind(&m, &entry, dir.path()).expect("redeploy reopens");
    let new = instance(&v2).unwrap();
    assert_eq!(now(new.open("").unwrap().get("k")), Ok(Some(b"1".to_vec())));
    now(new.open("").unwrap().set("k", b"2".to_vec())).unwrap();
    assert_eq!(now(old.open("").unwrap().get("k")), Ok(Some(b"2".to_vec())));
    // Both bound at once (new version first, then the old one retired) also works.
    let v3 = bind(&m, &entry, dir.path()).unwrap();
    drop((old, new, v2));
    assert_eq!(
        now(instance(&v3).unwrap().open("").unwrap().get("k")),
        Ok(Some(b"2".to_vec()))
    );
    // Two workloads have two files.
    let w = bind(&manifest(&unique("redeploy-other")), &entry, dir.path()).unwrap();
    assert_eq!(
        now(instance(&w).unwrap().open("").unwrap().get("k")),
        Ok(None)
    );
}

#[test]
fn bind_refuses_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(&unique("bad"));
    let e = bind(&m, &grant(&["store"], &[("backend", "redis")]), dir.path())
        .err()
        .unwrap();
    assert_eq!(e.field, "spec.hostInterfaces[1].config.backend");
    assert!(
        e.message.contains("redis") && e.hint.contains("memory, redb"),
        "{e}"
    );
    let e = bind(&m, &grant(&["store"], &[("bucket", "")]), dir.path())
        .err()
        .unwrap();
    assert_eq!(e.field, "spec.hostInterfaces[1].config.bucket");
    let long = "b".repeat(MAX_BUCKET_NAME_BYTES + 1);
    assert!(bind(&m, &grant(&["store"], &[("bucket", &long)]), dir.path()).is_err());
    // The data directory cannot be created: a file is in the way.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let e = bind(&m, &grant(&["store"], &[("backend", "redb")]), &file)
        .err()
        .unwrap();
    assert_eq!(e.field, "spec.hostInterfaces[1].config.backend");
    assert!(e.message.contains("cannot create"), "{e}");
    // A file that is not a redb database is an error at bind, not a panic.
    let name = unique("corrupt");
    let path = redb_path(dir.path(), "default", &name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0xab; 8192]).unwrap();
    let e = bind(
        &manifest(&name),
        &grant(&["store"], &[("backend", "redb")]),
        dir.path(),
    )
    .err()
    .unwrap();
    assert_eq!(e.field, "spec.hostInterfaces[1].config.backend");
    assert!(e.message.contains(&name), "names the file: {e}");
}

#[test]
fn linked_interfaces_follow_the_grant() {
    let grant_of = |ifaces: &[&str]| {
        Linked::from_grant(Some(
            &ifaces.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ))
    };
    let l = |store, atomics, batch| Linked {
        store,
        atomics,
        batch,
    };
    assert_eq!(grant_of(&["store"]), l(true, false, false));
    assert_eq!(grant_of(&["store", "atomics"]), l(true, true, false));
    assert_eq!(grant_of(&["batch"]), l(true, false, true));
    assert_eq!(
        grant_of(&["store", "atomics", "batch"]),
        l(true, true, true)
    );
    assert_eq!(Linked::from_grant(None), l(true, true, true));
}

#[test]
fn links_into_a_linker() {
    let engine = wasmtime::Engine::default();
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(&unique("link"));
    let binding = bind(&m, &grant(&["store", "atomics", "batch"], &[]), dir.path()).unwrap();
    let mut linker = Linker::<TestStore>::new(&engine);
    binding.add_to_linker(&mut linker).unwrap();
}

// --- the host functions, without wasm --------------------------------------------------

#[test]
fn host_functions_through_the_resource_table() {
    use atomics::Host as _;
    use batch::Host as _;
    use store::{Host as _, HostBucket as _};

    // Through the store's PluginView, as the linked host functions reach it.
    let mut state = TestStore {
        instances: PluginInstances {
            keyvalue: Some(Instance::new(KvStore::memory_unshared(), "todo")),
            ..Default::default()
        },
        table: ResourceTable::new(),
    };
    let mut v = view(&mut state);
    let b = now(v.open("default".into())).unwrap().unwrap();
    let rep = b.rep();
    let b2 = || Resource::<Bucket>::new_borrow(rep);
    assert!(matches!(
        now(v.open("someone-else".into())).unwrap(),
        Err(store::Error::NoSuchStore)
    ));
    now(v.set(b2(), "k".into(), b"v".to_vec()))
        .unwrap()
        .unwrap();
    assert_eq!(
        now(v.get(b2(), "k".into())).unwrap().unwrap(),
        Some(b"v".to_vec())
    );
    assert!(now(v.exists(b2(), "k".into())).unwrap().unwrap());
    assert_eq!(now(v.increment(b2(), "n".into(), 2)).unwrap().unwrap(), 2);
    let page = now(v.list_keys(b2(), None)).unwrap().unwrap();
    assert_eq!(
        (page.keys, page.cursor),
        (vec!["k".into(), "n".into()], None)
    );
    assert_eq!(
        now(v.get_many(b2(), vec!["k".into(), "x".into()]))
            .unwrap()
            .unwrap(),
        vec![Some(("k".into(), b"v".to_vec())), None]
    );
    now(v.set_many(b2(), vec![("x".into(), vec![])]))
        .unwrap()
        .unwrap();
    now(v.delete_many(b2(), vec!["x".into(), "n".into()]))
        .unwrap()
        .unwrap();
    now(v.delete(b2(), "k".into())).unwrap().unwrap();
    assert!(
        now(v.list_keys(b2(), None))
            .unwrap()
            .unwrap()
            .keys
            .is_empty()
    );
    match now(v.set(b2(), "k".into(), vec![0; MAX_VALUE_BYTES + 1])).unwrap() {
        Err(store::Error::Other(m)) => assert!(m.contains("MAX_VALUE_BYTES")),
        other => panic!("{other:?}"),
    }
    now(store::HostBucket::drop(&mut v, b)).unwrap();
    assert!(
        now(v.get(b2(), "k".into())).is_err(),
        "a dropped bucket traps"
    );

    // No keyvalue state for this instance: open is refused.
    let mut table = ResourceTable::new();
    let mut v = KeyValueView {
        instance: None,
        table: &mut table,
        tracer: None,
        stats: None,
    };
    assert!(matches!(
        now(v.open("default".into())).unwrap(),
        Err(store::Error::AccessDenied)
    ));
}

// --- memory and redb agree ---------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Get(String),
    Set(String, Vec<u8>),
    Delete(String),
    Exists(String),
    Increment(String, u64),
    GetMany(Vec<String>),
    SetMany(Vec<(String, Vec<u8>)>),
    DeleteMany(Vec<String>),
    /// The next page (size 1..4) after the cursor the last `Page` returned.
    Page(usize),
    /// Every key, paging from the start with pages of this size.
    ListAll(usize),
    /// A page (size, then offset) through a new handle: the cursor is an offset.
    PageAt(usize, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Value(Result<Option<Vec<u8>>, KvError>),
    Unit(Result<(), KvError>),
    Bool(Result<bool, KvError>),
    Count(Result<u64, KvError>),
    Many(Result<Entries, KvError>),
    Page(Result<Page, KvError>),
    All(Result<Vec<Page>, KvError>),
}

fn key() -> impl Strategy<Value = String> {
    "[abc]{0,3}"
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..6),
        (0u64..100).prop_map(|n| n.to_string().into_bytes()),
        Just(u64::MAX.to_string().into_bytes()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let keys = || proptest::collection::vec(key(), 0..5);
    prop_oneof![
        key().prop_map(Op::Get),
        (key(), value()).prop_map(|(k, v)| Op::Set(k, v)),
        key().prop_map(Op::Delete),
        key().prop_map(Op::Exists),
        (key(), prop_oneof![0u64..5, Just(u64::MAX)]).prop_map(|(k, d)| Op::Increment(k, d)),
        keys().prop_map(Op::GetMany),
        proptest::collection::vec((key(), value()), 0..5).prop_map(Op::SetMany),
        keys().prop_map(Op::DeleteMany),
        (1usize..4).prop_map(Op::Page),
        (1usize..4).prop_map(Op::ListAll),
        (1usize..4, 0u64..8).prop_map(|(size, at)| Op::PageAt(size, at)),
    ]
}

/// Applies `op` to `b`; `cursor` is the state of the `Page` walk.
fn apply(b: &mut Bucket, cursor: &mut Option<u64>, op: &Op) -> Out {
    match op.clone() {
        Op::Get(k) => Out::Value(now(b.get(&k))),
        Op::Set(k, v) => Out::Unit(now(b.set(&k, v))),
        Op::Delete(k) => Out::Unit(now(b.delete(&k))),
        Op::Exists(k) => Out::Bool(now(b.exists(&k))),
        Op::Increment(k, d) => Out::Count(now(b.increment(&k, d))),
        Op::GetMany(ks) => Out::Many(now(b.get_many(ks))),
        Op::SetMany(kvs) => Out::Unit(now(b.set_many(kvs))),
        Op::DeleteMany(ks) => Out::Unit(now(b.delete_many(ks))),
        Op::Page(size) => {
            let r = now(b.list_page(*cursor, size));
            if let Ok((_, next)) = &r {
                *cursor = *next;
            }
            Out::Page(r)
        }
        Op::PageAt(size, at) => {
            let mut fresh = Bucket {
                store: b.store.clone(),
                name: b.name.clone(),
                resume: None,
            };
            Out::Page(now(fresh.list_page(Some(at), size)))
        }
        Op::ListAll(size) => {
            let mut pages = Vec::new();
            let mut c = None;
            let all = loop {
                match now(b.list_page(c, size)) {
                    Ok(page) => {
                        c = page.1;
                        pages.push(page);
                        if c.is_none() {
                            break Ok(pages);
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            Out::All(all)
        }
    }
}

#[test]
fn memory_and_redb_agree() {
    let dir = tempfile::tempdir().unwrap();
    let redb = KvStore::redb(&dir.path().join("agree.redb")).unwrap();
    let runs = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            // A fresh bucket per run (shrinking re-runs too) in the one redb file.
            let bucket = format!("run{}", runs.fetch_add(1, Ordering::Relaxed));
            let mut mem = open(&KvStore::memory_unshared(), &bucket);
            let mut disk = open(&redb, &bucket);
            let (mut mc, mut dc) = (None, None);
            for (i, op) in ops.iter().enumerate() {
                let m = apply(&mut mem, &mut mc, op);
                let d = apply(&mut disk, &mut dc, op);
                prop_assert_eq!(&m, &d, "op {} {:?} disagrees", i, op);
            }
            // And the final contents are the same.
            let all = Op::ListAll(1000);
            prop_assert_eq!(
                apply(&mut mem, &mut None, &all),
                apply(&mut disk, &mut None, &all)
            );
            Ok(())
        })
        .unwrap();
}
