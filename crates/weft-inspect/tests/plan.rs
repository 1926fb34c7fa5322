// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]
use std::collections::BTreeMap;

use proptest::prelude::*;
use weft_inspect::{
    PlanComponent, PlanError, PlanService, Provider, interface_matches, plan, plan_with_service,
};

fn comp(name: &str, imports: &[&str], exports: &[&str]) -> PlanComponent {
    PlanComponent {
        name: name.into(),
        imports: imports.iter().map(|s| s.to_string()).collect(),
        exports: exports.iter().map(|s| s.to_string()).collect(),
    }
}

fn host() -> Vec<String> {
    vec!["wasi:cli".into(), "wasi:io".into(), "wasi:http".into()]
}

fn no_links() -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::new()
}

#[test]
fn exporters_come_first_and_imports_resolve() {
    let cs = [
        comp(
            "api",
            &["example:calc/ops@1.0.0", "wasi:cli/stdout@0.2.6"],
            &["wasi:http/incoming-handler@0.2.6"],
        ),
        comp(
            "calc",
            &["example:math/core@0.1.0"],
            &["example:calc/ops@1.2.0"],
        ),
        comp("math", &[], &["example:math/core@0.1.3"]),
    ];
    let p = plan(&cs, &host(), &no_links()).unwrap();
    assert_eq!(p.order, vec![2, 1, 0]);
    assert_eq!(
        p.resolutions[0][0].provider,
        Provider::Component {
            index: 1,
            export: "example:calc/ops@1.2.0".into()
        }
    );
    assert_eq!(p.resolutions[0][1].provider, Provider::Host);
    assert_eq!(p.groups(), vec![vec![2, 1, 0]]);
    assert!(p.is_consumed(1));
    assert!(!p.is_consumed(0));
}

#[test]
fn unrelated_components_are_separate_groups_in_manifest_order() {
    let cs = [
        comp("a", &[], &["x:y/z"]),
        comp("b", &[], &["x:y/w"]),
        comp("c", &["x:y/z"], &[]),
    ];
    let p = plan(&cs, &host(), &no_links()).unwrap();
    assert_eq!(p.order, vec![0, 1, 2]);
    assert_eq!(p.groups(), vec![vec![0, 2], vec![1]]);
}

#[test]
fn middleware_does_not_satisfy_itself() {
    let h = "wasi:http/incoming-handler@0.2.6";
    let cs = [comp("auth", &[h], &[h]), comp("app", &[], &[h])];
    let p = plan(&cs, &host(), &no_links()).unwrap();
    assert_eq!(p.order, vec![1, 0]);
    assert_eq!(
        p.resolutions[0][0].provider,
        Provider::Component {
            index: 1,
            export: h.into()
        }
    );
}

#[test]
fn cycle_is_refused_and_named() {
    let cs = [
        comp("a", &["x:b/f"], &["x:a/f"]),
        comp("b", &["x:c/f"], &["x:b/f"]),
        comp("c", &["x:a/f"], &["x:c/f"]),
        comp("d", &[], &[]),
    ];
    let err = plan(&cs, &host(), &no_links()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the components' links form a cycle: a -> b -> c -> a (`a` imports `x:b/f` from `b`, \
         `b` imports `x:c/f` from `c`, `c` imports `x:a/f` from `a`)"
    );
}

#[test]
fn ambiguity_is_refused_with_both_names_unless_links_choose() {
    let cs = [
        comp("api", &["example:calc/ops@1.0.0"], &[]),
        comp("calc", &[], &["example:calc/ops@1.0.0"]),
        comp("calc-v2", &[], &["example:calc/ops@1.1.0"]),
    ];
    let err = plan(&cs, &host(), &no_links()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, PlanError::Ambiguous { exporters, .. } if exporters == &["calc", "calc-v2"])
    );
    assert!(msg.contains("`calc` and `calc-v2`"), "{msg}");
    assert!(
        msg.contains("component `api` imports `example:calc/ops@1.0.0`"),
        "{msg}"
    );

    let mut links = BTreeMap::new();
    links.insert(
        "api".to_string(),
        BTreeMap::from([("example:calc/ops".to_string(), "calc-v2".to_string())]),
    );
    let p = plan(&cs, &host(), &links).unwrap();
    assert_eq!(
        p.resolutions[0][0].provider,
        Provider::Component {
            index: 2,
            export: "example:calc/ops@1.1.0".into()
        }
    );
    assert!(p.resolutions[0][0].explicit);
}

#[test]
fn bad_links_are_refused() {
    let cs = [comp("api", &["x:y/z"], &[]), comp("other", &[], &["x:q/r"])];
    let mut links = BTreeMap::new();
    links.insert(
        "api".to_string(),
        BTreeMap::from([("x:y/z".to_string(), "other".to_string())]),
    );
    let msg = plan(&cs, &host(), &links).unwrap_err().to_string();
    assert!(msg.contains("`other` does not export it"), "{msg}");
    links.insert(
        "api".to_string(),
        BTreeMap::from([("x:y/z".to_string(), "nope".to_string())]),
    );
    let msg = plan(&cs, &host(), &links).unwrap_err().to_string();
    assert!(msg.contains("there is no component `nope`"), "{msg}");
    links.insert(
        "api".to_string(),
        BTreeMap::from([("x:not/imported".to_string(), "other".to_string())]),
    );
    let msg = plan(&cs, &host(), &links).unwrap_err().to_string();
    assert!(
        msg.contains("`api` does not import `x:not/imported`"),
        "{msg}"
    );
}

#[test]
fn unsatisfied_imports_are_all_named() {
    let cs = [
        comp("a", &["x:y/z@1.0.0", "wasi:cli/stdout@0.2.0"], &[]),
        comp("b", &["wasi:keyvalue/store@0.2.0-draft"], &[]),
    ];
    let err = plan(&cs, &host(), &no_links()).unwrap_err();
    assert_eq!(
        err,
        PlanError::Unsatisfied {
            missing: vec![
                ("a".into(), "x:y/z@1.0.0".into()),
                ("b".into(), "wasi:keyvalue/store@0.2.0-draft".into())
            ]
        }
    );
    assert!(
        err.to_string()
            .contains("component `a` imports `x:y/z@1.0.0`, which no other component")
    );
}

#[test]
fn duplicate_names_are_refused() {
    let cs = [comp("a", &[], &[]), comp("a", &[], &[])];
    assert_eq!(
        plan(&cs, &host(), &no_links()).unwrap_err(),
        PlanError::DuplicateName("a".into())
    );
}

#[test]
fn version_matching() {
    assert!(interface_matches("a:b/c@1.0.0", "a:b/c@1.4.2"));
    assert!(!interface_matches("a:b/c@1.0.0", "a:b/c@2.0.0"));
    assert!(interface_matches("a:b/c@0.2.0", "a:b/c@0.2.6"));
    assert!(!interface_matches("a:b/c@0.2.0", "a:b/c@0.3.0"));
    assert!(!interface_matches("a:b/c@0.0.1", "a:b/c@0.0.2"));
    assert!(interface_matches("a:b/c@0.3.0-rc-1", "a:b/c@0.3.0-rc-1"));
    assert!(!interface_matches("a:b/c@0.3.0-rc-1", "a:b/c@0.3.0-rc-2"));
    assert!(!interface_matches("a:b/c", "a:b/c@1.0.0"));
    assert!(!interface_matches("a:b/c@1.0.0", "a:b/d@1.0.0"));
    assert!(interface_matches("add", "add"));
}

fn svc(name: &str, exports: &[&str]) -> PlanService {
    PlanService {
        name: name.into(),
        exports: exports.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn the_service_provides_what_no_component_exports() {
    let cs = [
        comp(
            "web",
            &["example:svc/counter@0.1.0", "wasi:cli/stdout@0.2.6"],
            &["wasi:http/incoming-handler@0.2.6"],
        ),
        comp("calc", &[], &["example:calc/ops@1.0.0"]),
    ];
    let store = svc(
        "store",
        &["wasi:cli/run@0.3.0", "example:svc/counter@0.1.2"],
    );
    let p = plan_with_service(&cs, Some(&store), &host(), &no_links()).unwrap();
    assert_eq!(
        p.resolutions[0][0].provider,
        Provider::Service {
            export: "example:svc/counter@0.1.2".into()
        }
    );
    assert!(!p.resolutions[0][0].explicit);
    assert_eq!(p.resolutions[0][1].provider, Provider::Host);
    // The service adds no edge: both components stand alone, in manifest order.
    assert!(p.edges().is_empty());
    assert_eq!(p.order, vec![0, 1]);
    // Without the service the import is unsatisfied.
    let err = plan(&cs, &host(), &no_links()).unwrap_err();
    assert!(matches!(err, PlanError::Unsatisfied { .. }), "{err}");
    // An incompatible version of the service's export does not match.
    let old = svc("store", &["example:svc/counter@0.2.0"]);
    let err = plan_with_service(&cs, Some(&old), &host(), &no_links()).unwrap_err();
    assert!(matches!(err, PlanError::Unsatisfied { .. }), "{err}");
}

#[test]
fn the_services_wasi_exports_are_not_offered() {
    // A middleware importing wasi:http/handler@0.3 keeps getting it from the host, not from a
    // front-door service that exports the same interface.
    let cs = [comp("mw", &["wasi:http/handler@0.3.0"], &[])];
    let front = svc("front", &["wasi:http/handler@0.3.0", "wasi:cli/run@0.3.0"]);
    let p = plan_with_service(&cs, Some(&front), &host(), &no_links()).unwrap();
    assert_eq!(p.resolutions[0][0].provider, Provider::Host);
    assert_eq!(front.offered().count(), 0);
}

#[test]
fn a_component_and_the_service_exporting_one_import_are_ambiguous_unless_links_choose() {
    let cs = [
        comp("web", &["example:svc/counter@0.1.0"], &[]),
        comp("fake", &[], &["example:svc/counter@0.1.0"]),
    ];
    let store = svc("store", &["example:svc/counter@0.1.0"]);
    let err = plan_with_service(&cs, Some(&store), &host(), &no_links()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, PlanError::Ambiguous { exporters, service, .. }
            if exporters == &["fake", "store"] && service.as_deref() == Some("store")),
        "{err:?}"
    );
    assert!(
        text.contains("exported by `fake` and `store` (`store` is the workload's service)"),
        "{text}"
    );
    assert!(
        text.contains("links: { \"example:svc/counter@0.1.0\": fake }"),
        "{text}"
    );

    // links names the service by its name, or the component.
    let pick = |target: &str| {
        BTreeMap::from([(
            "web".to_string(),
            BTreeMap::from([("example:svc/counter".to_string(), target.to_string())]),
        )])
    };
    let p = plan_with_service(&cs, Some(&store), &host(), &pick("store")).unwrap();
    assert_eq!(
        p.resolutions[0][0].provider,
        Provider::Service {
            export: "example:svc/counter@0.1.0".into()
        }
    );
    assert!(p.resolutions[0][0].explicit);
    assert!(p.edges().is_empty());
    let p = plan_with_service(&cs, Some(&store), &host(), &pick("fake")).unwrap();
    assert_eq!(
        p.resolutions[0][0].provider,
        Provider::Component {
            index: 1,
            export: "example:svc/counter@0.1.0".into()
        }
    );

    // A links entry naming the service for something it does not export is refused.
    let bare = svc("store", &["wasi:cli/run@0.3.0"]);
    let err = plan_with_service(&cs, Some(&bare), &host(), &pick("store")).unwrap_err();
    assert!(
        err.to_string()
            .contains("but the service `store` does not export it"),
        "{err}"
    );
    // Without a service, the name is unknown.
    let err = plan(&cs, &host(), &pick("store")).unwrap_err();
    assert!(
        err.to_string().contains("there is no component `store`"),
        "{err}"
    );
}

#[test]
fn the_service_cannot_share_a_components_name() {
    let cs = [comp("store", &[], &[])];
    let err = plan_with_service(&cs, Some(&svc("store", &[])), &host(), &no_links()).unwrap_err();
    assert_eq!(err, PlanError::ServiceNameTaken("store".into()));
}

/// Random workloads: each component exports its own interface `t:c<i>/f` and imports some
/// others' interfaces.
fn workload() -> impl Strategy<Value = Vec<PlanComponent>> {
    (1usize..7).prop_flat_map(|n| {
        prop::collection::vec(prop::collection::vec(0..n, 0..4), n).prop_map(move |imports| {
            imports
                .into_iter()
                .enumerate()
                .map(|(i, imps)| {
                    let mut imports: Vec<String> = imps
                        .into_iter()
                        .filter(|&j| j != i)
                        .map(|j| format!("t:c{j}/f"))
                        .collect();
                    imports.sort();
                    imports.dedup();
                    PlanComponent {
                        name: format!("c{i}"),
                        imports,
                        exports: vec![format!("t:c{i}/f")],
                    }
                })
                .collect()
        })
    })
}

fn has_cycle(cs: &[PlanComponent]) -> bool {
    // Depth-first search over "imports from" edges.
    fn visit(i: usize, cs: &[PlanComponent], state: &mut [u8]) -> bool {
        state[i] = 1;
        for imp in &cs[i].imports {
            let j: usize = imp[3..imp.len() - 2].parse().unwrap();
            if state[j] == 1 || (state[j] == 0 && visit(j, cs, state)) {
                return true;
            }
        }
        state[i] = 2;
        false
    }
    let mut state = vec![0u8; cs.len()];
    (0..cs.len()).any(|i| state[i] == 0 && visit(i, cs, &mut state))
}

proptest! {
    #[test]
    fn order_respects_every_edge_and_cycles_are_refused(cs in workload()) {
        match plan(&cs, &host(), &no_links()) {
            Ok(p) => {
                prop_assert!(!has_cycle(&cs));
                let mut sorted = p.order.clone();
                sorted.sort();
                prop_assert_eq!(sorted, (0..cs.len()).collect::<Vec<_>>());
                let pos = |i: usize| p.order.iter().position(|&x| x == i).unwrap();
                for e in p.edges() {
                    prop_assert!(pos(e.exporter) < pos(e.importer));
                }
                let in_groups: usize = p.groups().iter().map(Vec::len).sum();
                prop_assert_eq!(in_groups, cs.len());
            }
            Err(PlanError::Cycle { path }) => {
                prop_assert!(has_cycle(&cs));
                prop_assert!(!path.is_empty());
                // The path is a real cycle: each step's exporter is the next step's importer.
                for (k, (_, import, to)) in path.iter().enumerate() {
                    let next = &path[(k + 1) % path.len()].0;
                    prop_assert_eq!(to, next);
                    prop_assert_eq!(import, &format!("t:{to}/f"));
                }
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn plan_never_panics(
        names in prop::collection::vec("[a-c]{1,2}", 0..5),
        imports in prop::collection::vec(prop::collection::vec("[a-c]:[a-c]/[a-c](@[01]\\.[0-2]\\.[0-2])?", 0..3), 5),
        exports in prop::collection::vec(prop::collection::vec("[a-c]:[a-c]/[a-c](@[01]\\.[0-2]\\.[0-2])?", 0..3), 5),
        link in prop::option::of(("[a-c]{1,2}", "[a-c]:[a-c]/[a-c]", "[a-c]{1,2}")),
    ) {
        let cs: Vec<PlanComponent> = names.iter().enumerate().map(|(i, n)| PlanComponent {
            name: n.clone(), imports: imports[i].clone(), exports: exports[i].clone(),
        }).collect();
        let mut links = BTreeMap::new();
        if let Some((c, iface, target)) = link {
            links.insert(c, BTreeMap::from([(iface, target)]));
        }
        if let Ok(p) = plan(&cs, &["a:a".to_string()], &links) {
            let pos = |i: usize| p.order.iter().position(|&x| x == i).unwrap();
            for e in p.edges() {
                prop_assert!(pos(e.exporter) < pos(e.importer));
                prop_assert!(interface_matches(e.import, e.export));
            }
        }
    }

    /// With a service exporting some interfaces: every import resolves to exactly the provider
    /// the rules name (links, else the only exporter among components and the service, else
    /// the host), ambiguity is refused exactly when two or more could provide it, and service
    /// links never add ordering edges.
    #[test]
    fn the_service_is_one_provider_among_components(
        comp_exports in prop::collection::vec(prop::collection::vec(0usize..4, 0..3), 1..4),
        svc_exports in prop::collection::vec(0usize..4, 0..4),
        imports in prop::collection::vec(0usize..4, 0..4),
        pick in prop::option::of(0usize..5),
    ) {
        let iface = |k: usize| format!("t:i{k}/f@1.0.0");
        let mut cs: Vec<PlanComponent> = comp_exports.iter().enumerate().map(|(i, ex)| PlanComponent {
            name: format!("c{i}"),
            imports: vec![],
            exports: ex.iter().map(|&k| iface(k)).collect(),
        }).collect();
        let mut imps: Vec<String> = imports.iter().map(|&k| iface(k)).collect();
        imps.sort();
        imps.dedup();
        cs.push(PlanComponent { name: "root".into(), imports: imps.clone(), exports: vec![] });
        let root = cs.len() - 1;
        let service = PlanService {
            name: "svc".into(),
            exports: svc_exports.iter().map(|&k| iface(k)).collect(),
        };
        // Optionally link the root's first import to one provider (a component or the service).
        let mut links = BTreeMap::new();
        let target = pick.map(|p| if p < root { format!("c{p}") } else { "svc".to_string() });
        if let (Some(t), Some(first)) = (&target, imps.first()) {
            links.insert("root".to_string(), BTreeMap::from([(first.clone(), t.clone())]));
        }
        let result = plan_with_service(&cs, Some(&service), &["t:i3".to_string()], &links);
        // What the rules say, import by import.
        let exporters = |imp: &String| -> Vec<String> {
            let mut v: Vec<String> = (0..root).filter(|&i| cs[i].exports.contains(imp)).map(|i| format!("c{i}")).collect();
            if service.exports.contains(imp) { v.push("svc".into()); }
            v
        };
        // Bad links and ambiguity stop the planner at once; unsatisfied imports are gathered.
        let mut expected: Result<Vec<Provider>, &str> = Ok(vec![]);
        let mut unsatisfied = false;
        for (n, imp) in imps.iter().enumerate() {
            let linked = if n == 0 { target.clone() } else { None };
            let provider = match linked {
                Some(t) if !exporters(imp).contains(&t) => Err("bad link"),
                Some(t) if t == "svc" => Ok(Provider::Service { export: imp.clone() }),
                Some(t) => Ok(Provider::Component { index: t[1..].parse().unwrap(), export: imp.clone() }),
                None => match exporters(imp).as_slice() {
                    [] if imp.starts_with("t:i3/") => Ok(Provider::Host),
                    [] => Err("unsatisfied"),
                    [one] if one == "svc" => Ok(Provider::Service { export: imp.clone() }),
                    [one] => Ok(Provider::Component { index: one[1..].parse().unwrap(), export: imp.clone() }),
                    _ => Err("ambiguous"),
                },
            };
            match provider {
                Ok(p) => if let Ok(v) = &mut expected { v.push(p) },
                Err("unsatisfied") => unsatisfied = true,
                Err(e) => { expected = Err(e); break; }
            }
        }
        if unsatisfied && expected.is_ok() {
            expected = Err("unsatisfied");
        }
        match (result, expected) {
            (Ok(p), Ok(want)) => {
                let got: Vec<Provider> = p.resolutions[root].iter().map(|r| r.provider.clone()).collect();
                prop_assert_eq!(got, want);
                for e in p.edges() {
                    prop_assert!(e.exporter < root && e.importer == root);
                }
            }
            (Err(PlanError::Ambiguous { exporters: ex, service: s, .. }), Err("ambiguous")) => {
                prop_assert!(ex.len() >= 2);
                prop_assert_eq!(s.is_some(), ex.last().map(String::as_str) == Some("svc"));
            }
            (Err(PlanError::BadLink { .. }), Err("bad link")) => {}
            (Err(PlanError::Unsatisfied { .. }), Err("unsatisfied")) => {}
            (got, want) => prop_assert!(false, "got {got:?}, want {want:?}"),
        }
    }
}
