//! A guest reaches a real PostgreSQL on the host through a redirect rule
//! (`localResources.sockets: [{port: 5432, hostPort: P}]`), and nothing else.
//!
//! PostgreSQL comes from Debian (`scripts/test.sh` installs `postgresql` when it is missing),
//! started by `common::postgres` with trust authentication, listening only on 127.0.0.1:P.
//! It fails loudly when PostgreSQL cannot be started: it never skips.

use crate::common::postgres::Postgres;
use crate::host::*;

fn pg_get(host: &Host, path: &str) -> (u16, String) {
    host.get("pgclient", path)
}

fn deploy_pg_client(host: &Host, host_port: u16) {
    host.deploy_escape(
        "pgclient",
        &format!("        timeoutMs: 20000\n        sockets: [ {{ port: 5432, hostPort: {host_port} }} ]\n"),
        "",
    );
}

#[test]
fn postgres_through_a_redirect_rule_and_nothing_else() {
    let _serial = crate::serial();
    let pg = Postgres::start();
    let host = Host::start(&[]);
    deploy_pg_client(&host, pg.port);

    // The guest asks for 127.0.0.1:5432; the host connects it to 127.0.0.1:<pg port>.
    assert_eq!(
        pg_get(&host, "/pg?addr=127.0.0.1:5432"),
        (200, "pg: 1".to_string()),
        "SELECT 1 through the redirect"
    );
    // The real port is not granted to the guest, nor is another port, nor 5432 on another
    // loopback address.
    for addr in [
        format!("127.0.0.1:{}", pg.port),
        "127.0.0.1:5433".to_string(),
        "127.0.0.2:5432".to_string(),
    ] {
        let (status, body) = pg_get(&host, &format!("/pg?addr={addr}"));
        assert!(
            status == 200 && body.ends_with(": access-denied"),
            "{addr}: expected access-denied, got {status} {body}"
        );
    }
    // And it works again afterwards (the denials did not break the grant).
    assert_eq!(
        pg_get(&host, "/pg?addr=127.0.0.1:5432"),
        (200, "pg: 1".to_string())
    );
}
