//! Core NATS through a shared `async_nats::Client`.

use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;

use crate::{Bus, BusError, Message, Subscription, check_subject, inprocess::check_pattern};

/// Messages async-nats buffers per subscription when Weft makes the connection
/// (`weft up --nats`); past it the client drops messages (a slow consumer) instead of growing.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 4096;

/// Connects to `url` the way `weft up --nats URL` does: named `weft`, with
/// [`DEFAULT_SUBSCRIPTION_CAPACITY`], retrying the first connection for up to `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<async_nats::Client, BusError> {
    let options = async_nats::ConnectOptions::new()
        .name("weft")
        .subscription_capacity(DEFAULT_SUBSCRIPTION_CAPACITY)
        .connection_timeout(timeout);
    tokio::time::timeout(timeout, options.connect(url))
        .await
        .map_err(|_| BusError::Unavailable(format!("no connection to {url} within {timeout:?}")))?
        .map_err(|e| BusError::Unavailable(format!("cannot connect to {url}: {e}")))
}

/// The NATS bus: core subjects over a client the host shares with everything else on it.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
}

impl NatsBus {
    pub fn new(client: async_nats::Client) -> Self {
        NatsBus { client }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn check_size(&self, msg: &Message) -> Result<(), BusError> {
        let max = self.client.server_info().max_payload;
        let size = msg.body.len()
            + msg
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>();
        if max > 0 && size > max {
            return Err(BusError::TooLarge { size, max });
        }
        Ok(())
    }
}

fn to_headers(headers: &[(String, String)]) -> Result<Option<HeaderMap>, BusError> {
    if headers.is_empty() {
        return Ok(None);
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        // Header lines are a text protocol: refuse what would break the framing.
        let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
        if name.is_empty() || bad(name) || name.contains(':') || bad(value) {
            return Err(BusError::Unavailable(format!("invalid header `{name}`")));
        }
        map.append(name.as_str(), value.as_str());
    }
    Ok(Some(map))
}

fn from_nats(m: async_nats::Message) -> Message {
    let headers = m
        .headers
        .as_ref()
        .map(|h| {
            h.iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| (name.to_string(), v.as_str().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        subject: m.subject.to_string(),
        reply_to: m.reply.map(|r| r.to_string()),
        headers,
        body: m.payload,
    }
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn publish(&self, msg: Message) -> Result<(), BusError> {
        check_subject(&msg.subject)?;
        if let Some(reply) = &msg.reply_to {
            check_subject(reply)?;
        }
        self.check_size(&msg)?;
        let headers = to_headers(&msg.headers)?;
        let subject = msg.subject;
        let result = match (msg.reply_to, headers) {
            (None, None) => self.client.publish(subject, msg.body).await,
            (None, Some(h)) => self.client.publish_with_headers(subject, h, msg.body).await,
            (Some(r), None) => self.client.publish_with_reply(subject, r, msg.body).await,
            (Some(r), Some(h)) => {
                self.client
                    .publish_with_reply_and_headers(subject, r, h, msg.body)
                    .await
            }
        };
        result.map_err(unavailable)
    }

    async fn request(&self, msg: Message, timeout: Duration) -> Result<Message, BusError> {
        check_subject(&msg.subject)?;
        self.check_size(&msg)?;
        let mut request = async_nats::Request::new()
            .payload(msg.body)
            .timeout(Some(timeout));
        if let Some(h) = to_headers(&msg.headers)? {
            request = request.headers(h);
        }
        let subject = msg.subject;
        match self.client.send_request(subject.clone(), request).await {
            Ok(reply) => Ok(from_nats(reply)),
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::TimedOut => BusError::Timeout(timeout),
                async_nats::RequestErrorKind::NoResponders => BusError::NoResponders(subject),
                _ => unavailable(e),
            }),
        }
    }

    async fn subscribe(
        &self,
        pattern: &str,
        queue_group: Option<&str>,
    ) -> Result<Subscription, BusError> {
        check_pattern(pattern)?;
        let subscriber = match queue_group {
            None => self.client.subscribe(pattern.to_string()).await,
            Some(q) => {
                self.client
                    .queue_subscribe(pattern.to_string(), q.to_string())
                    .await
            }
        }
        .map_err(unavailable)?;
        Ok(Box::pin(subscriber.map(from_nats)))
    }

    async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(unavailable)
    }

    fn max_payload(&self) -> Option<usize> {
        Some(self.client.server_info().max_payload)
    }
}
