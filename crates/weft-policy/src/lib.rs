//! Weft's policy core: pure, allocation-light decision functions over untrusted input.
//!
//! Nothing here touches the network, the file system or wasmtime, so every function can be
//! property-tested against a naive reference and fuzzed (see `fuzz/`):
//! - [`ingress`]: RFC 9112 at the ingress: the request's authority (one valid `Host`, or an
//!   absolute-form target's), or why it is refused;
//! - [`router`]: which workload an ingress request goes to (Host header + path prefix);
//! - [`allow`]: which `scheme://host:port` a guest may send outgoing HTTP requests to;
//! - [`internal`]: the reserved `NAME.weft.internal` names of in-memory HTTP between workloads,
//!   and which allow rules reach them;
//! - [`sockets`]: which `wasi:sockets` connect/bind/lookup a guest may do, and where a
//!   redirect rule sends it;
//! - [`grant`]: a denied use as a typed request for a grant (what `weft dev` explains);
//! - [`messaging`]: NATS subjects and patterns, the wildcard matcher, and which subjects a
//!   guest may publish to;
//! - [`oci`]: the `oci://` image reference grammar, and whether a registry's image manifest is
//!   a Wasm artifact Weft runs (only Wasm bytes, never precompiled code).

pub mod allow;
pub mod grant;
pub mod ingress;
pub mod internal;
pub mod messaging;
pub mod oci;
pub mod path_query;
pub mod router;
pub mod sockets;
