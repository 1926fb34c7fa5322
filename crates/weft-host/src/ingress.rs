//! The HTTP ingress of `weft up`: every request is routed by Host header and longest path
//! prefix to a workload (see `router`).

use std::sync::Arc;

use weft_runtime::WasiBody;

use crate::host::Host;
use crate::server::Handler;

#[derive(Clone)]
pub struct Ingress(pub Arc<Host>);

impl Handler for Ingress {
    async fn handle(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        self.0.handle(request).await
    }
}
