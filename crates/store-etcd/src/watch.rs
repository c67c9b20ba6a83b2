//! Watches: one etcd watch stream per `Store::watch`, its responses flattened into events.
//!
//! `watch` returns once etcd has created the watch, so every write after it is seen. A start at
//! or below the recorded compaction fails at once (etcd itself would still serve the compacted
//! revision, see the `compact` module). Whatever
//! ends the etcd stream (compaction, cancellation, a transport error, the server closing it)
//! becomes the last item of the returned stream, as an error.

use std::collections::VecDeque;

use etcd_client::proto::{PbEvent, PbWatchResponse};
use etcd_client::{WatchOptions, WatchRequestSender, WatchResponseStream};
use futures::StreamExt;
use k8rs_store::{Event, Revision, WatchStream};

use crate::error::{Error, unexpected};
use crate::keys::Keyspace;
use crate::rpc::call;
use crate::store::EtcdStore;

/// `mvccpb.Event.EventType` values.
const PUT: i32 = 0;
const DELETE: i32 = 1;

impl EtcdStore {
    pub(crate) async fn open_watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> k8rs_store::Result<WatchStream> {
        if from > 0 {
            self.read_compaction_record().await?.0.check(from)?;
        }
        let (start, end) = self.keys.range(prefix, None);
        let options = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_start_revision(from.max(0));
        let mut client = self.watch.clone();
        let (sender, mut responses) = call(client.watch(start, Some(options))).await?.split();
        let created = call(responses.message()).await?;
        let mut watch = Watch {
            _sender: sender,
            responses,
            keys: self.keys.clone(),
            from,
            pending: VecDeque::new(),
            finished: false,
        };
        match created {
            Some(created) if created.0.created => watch.accept(created.0),
            Some(other) => return Err(unexpected(format!("watch began with {other:?}")).into()),
            None => return Err(Error::WatchClosed.into()),
        }
        if watch.finished {
            // Canceled at creation: fail at once rather than as the first item.
            if let Some(Err(err)) = watch.pending.pop_front() {
                return Err(err);
            }
        }
        Ok(futures::stream::unfold(watch, Watch::next).boxed())
    }
}

/// One open etcd watch and the events received but not yet delivered.
struct Watch {
    /// Kept so the request half of the gRPC stream stays open.
    _sender: WatchRequestSender,
    responses: WatchResponseStream,
    keys: Keyspace,
    from: Revision,
    pending: VecDeque<k8rs_store::Result<Event>>,
    finished: bool,
}

impl Watch {
    async fn next(mut self) -> Option<(k8rs_store::Result<Event>, Watch)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            if self.finished {
                return None;
            }
            match self.responses.message().await {
                Ok(Some(response)) => self.accept(response.0),
                Ok(None) => self.fail(Error::WatchClosed.into()),
                Err(err) => self.fail(Error::Request(err).into()),
            }
        }
    }

    /// Queues what one etcd response means: its events, or the error that ends the watch.
    fn accept(&mut self, response: PbWatchResponse) {
        if response.compact_revision != 0 {
            let compacted = response.compact_revision;
            self.fail(k8rs_store::Error::Compacted {
                requested: self.from,
                compacted,
            });
        } else if response.canceled {
            self.fail(Error::WatchCanceled(response.cancel_reason).into());
        } else {
            for event in response.events {
                match decode_event(&self.keys, event) {
                    Ok(event) => self.pending.push_back(Ok(event)),
                    Err(err) => return self.fail(err.into()),
                }
            }
        }
    }

    /// Queues `err` as the stream's last item.
    fn fail(&mut self, err: k8rs_store::Error) {
        self.pending.push_back(Err(err));
        self.finished = true;
    }
}

fn decode_event(keys: &Keyspace, event: PbEvent) -> Result<Event, Error> {
    let kv = event
        .kv
        .ok_or_else(|| unexpected("watch event without a key-value"))?;
    let revision = kv.mod_revision;
    let created = kv.create_revision == kv.mod_revision;
    let prev = event.prev_kv.map(|prev| keys.decode(prev)).transpose()?;
    let missing_prev = || {
        // etcd leaves the previous value out when its revision was compacted meanwhile.
        unexpected(format!(
            "watch event at revision {revision} without the previous key-value"
        ))
    };
    match event.r#type {
        PUT => {
            let prev = if created {
                None
            } else {
                Some(prev.ok_or_else(missing_prev)?)
            };
            Ok(Event::Put {
                kv: keys.decode(kv)?,
                prev,
            })
        }
        DELETE => Ok(Event::Delete {
            prev: prev.ok_or_else(missing_prev)?,
            revision,
        }),
        other => Err(unexpected(format!("watch event of unknown type {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::PbKeyValue;

    use super::*;

    fn kv(key: &str, create_revision: i64, mod_revision: i64) -> PbKeyValue {
        PbKeyValue {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            create_revision,
            mod_revision,
            ..PbKeyValue::default()
        }
    }

    fn event(kind: i32, kv: Option<PbKeyValue>, prev: Option<PbKeyValue>) -> PbEvent {
        PbEvent {
            r#type: kind,
            kv,
            prev_kv: prev,
        }
    }

    #[test]
    fn creates_updates_and_deletes_decode() {
        let keys = Keyspace::new("/p");
        let create = decode_event(&keys, event(PUT, Some(kv("/p/a", 5, 5)), None));
        assert!(matches!(create, Ok(Event::Put { prev: None, .. })));
        let update = decode_event(
            &keys,
            event(PUT, Some(kv("/p/a", 5, 6)), Some(kv("/p/a", 5, 5))),
        );
        assert!(matches!(update, Ok(Event::Put { prev: Some(_), .. })));
        let delete = decode_event(
            &keys,
            event(DELETE, Some(kv("/p/a", 0, 7)), Some(kv("/p/a", 5, 6))),
        );
        match delete {
            Ok(Event::Delete { prev, revision }) => {
                assert_eq!(
                    (prev.key.as_str(), prev.mod_revision, revision),
                    ("/a", 6, 7)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_events_are_errors() {
        let keys = Keyspace::default();
        assert!(decode_event(&keys, event(PUT, None, None)).is_err());
        assert!(decode_event(&keys, event(7, Some(kv("a", 1, 1)), None)).is_err());
        assert!(decode_event(&keys, event(PUT, Some(kv("a", 1, 2)), None)).is_err());
        assert!(decode_event(&keys, event(DELETE, Some(kv("a", 0, 2)), None)).is_err());
    }
}
