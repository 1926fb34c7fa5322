//! `{{name}}`: a stream transform written against wasmCloud's `wasmcloud:messaging@0.2.0`
//! (nothing host-specific: it runs on wasmCloud too). The host calls `handle-message` once per
//! message on the workload's subscriptions (`in.*`, see weft.yaml). A message with body `B` on
//! `in.X` is published upper-cased to `out.X` and, when it has a `reply-to`, sent there too.
//! An `err` result (or a trap) fails that message alone; with a `deadLetter` subject in the
//! manifest it is published there.

wit_bindgen::generate!({
    path: "wit",
    world: "wasmcloud:messaging/messaging-handler",
});

use exports::wasmcloud::messaging::handler::Guest;
use wasmcloud::messaging::consumer;
use wasmcloud::messaging::types::BrokerMessage;

struct Component;

export!(Component);

impl Guest for Component {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        let body = transform(&msg.body)?;
        let last = msg.subject.rsplit('.').next().unwrap_or("none");
        // Publishing needs a grant (`publish` in weft.yaml); the reply-to is always allowed.
        consumer::publish(&BrokerMessage {
            subject: format!("out.{last}"),
            body: body.clone(),
            reply_to: None,
        })?;
        if let Some(reply_to) = msg.reply_to {
            consumer::publish(&BrokerMessage {
                subject: reply_to,
                body,
                reply_to: None,
            })?;
        }
        Ok(())
    }
}

/// The transform: UTF-8 text, upper-cased.
fn transform(body: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    Ok(text.to_uppercase().into_bytes())
}
