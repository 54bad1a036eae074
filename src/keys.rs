//! The Redis key layout, written once: which key holds what (contract §1 and §9).
//!
//! Plain strings in, plain strings out: this module knows nothing of the Redis client, so
//! config validation, the CLI and the engine can all name keys without importing `redis`.
//! Every key that one script or transaction touches together with a stream starts with that
//! stream's name, so on Redis Cluster it follows the stream's hash tag into the same slot.

/// The DLQ key when the config names none: `<stream>:dlq`.
pub fn default_dlq(stream: &str) -> String {
    format!("{stream}:dlq")
}

/// The set whose members are the names of paused pools (one for all partitions).
pub fn paused(stream: &str) -> String {
    format!("{stream}:paused")
}

/// The hash that records the progress of replay job `job` on `stream`.
pub fn replay_job(stream: &str, job: &str) -> String {
    format!("{stream}:replay:{job}")
}

/// The state of recurring schedule `name` (contract §13): a hash with `last_tick` (unix ms),
/// `since` (first start or last resume, unix ms) and `paused`. `stream` is the stream the
/// schedule publishes to (with partitions, its partition's), so the hash, the stream and
/// the events' dedup keys share a slot and one script can touch them all.
pub fn schedule(stream: &str, name: &str) -> String {
    format!("{stream}:schedule:{name}")
}

/// The string (with a TTL) that makes `weir publish --id <id>` idempotent on `stream`.
pub fn dedup(stream: &str, id: &str) -> String {
    format!("{stream}:dedup:{id}")
}

/// The sorted set of delayed events of `stream` (a partition's stream, when partitioned),
/// scored by due time in unix ms; each member is one event as a JSON object of strings
/// (contract §13).
pub fn scheduled(stream: &str) -> String {
    format!("{stream}:scheduled")
}

/// The ownership lease of ordered pool `pool` on `stream` (a partition's stream, when
/// partitioned): a hash with `consumer`, `epoch`, `since`.
pub fn owner(stream: &str, pool: &str) -> String {
    format!("{stream}:owner:{pool}")
}

/// The hash of processes serving ordered pool `pool` (consumer → last heartbeat, unix ms):
/// how many share its partitions.
pub fn members(stream: &str, pool: &str) -> String {
    format!("{stream}:members:{pool}")
}

/// The hash the engine refreshes every `[telemetry] interval_ms` with the stream's and DLQ's
/// lengths and each pool's lag, pending count and oldest pending age (contract §12). One
/// hash for the whole stream, partitions summed: named after the configured stream, so a
/// hash-tagged name (`{bus}:events`) keeps it in the stream's slot.
pub fn monitor(stream: &str) -> String {
    format!("{stream}:monitor")
}

/// The counters and `last_*` fields of telemetry value `value` (`[telemetry] key`, e.g. a
/// connector key). The value is used verbatim: it comes from publishers, so callers bound
/// its length before naming a key with it.
pub fn telemetry(stream: &str, value: &str) -> String {
    format!("{stream}:telemetry:{value}")
}

/// The set of every telemetry value written so far: how the admin API lists the telemetry
/// hashes without a SCAN (which a cluster would need per node).
pub fn telemetry_index(stream: &str) -> String {
    format!("{stream}:telemetry")
}

/// The hash where each process running adaptive pool `pool` publishes its current
/// concurrency (consumer → `{"current","min","max","at"}`), for `weir status`.
pub fn concurrency(stream: &str, pool: &str) -> String {
    format!("{stream}:concurrency:{pool}")
}

/// The text inside the first `{…}` of a key, if non-empty: what Redis Cluster hashes.
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')? + open + 1;
    Some(&key[open + 1..close]).filter(|t| !t.is_empty())
}

/// Partition `i`'s name for `key`, a key of the stream `name`'s family: the hash tag gets
/// `:i` appended (`{bus}:events` → `{bus:0}:events`); without a tag, the stream name
/// becomes the tag (`integration-bus:dlq` → `{integration-bus:0}:dlq`). `None` when `key`
/// has neither the stream's tag nor its name in front.
pub fn partition_key(name: &str, key: &str, i: usize) -> Option<String> {
    match hash_tag(name) {
        Some(tag) => {
            let braced = format!("{{{tag}}}");
            key.contains(&braced)
                .then(|| key.replacen(&braced, &format!("{{{tag}:{i}}}"), 1))
        }
        None => key
            .strip_prefix(name)
            .map(|rest| format!("{{{name}:{i}}}{rest}")),
    }
}

/// One stream key of the main stream and the DLQ key beside it (in its slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Position in the partition list; 0 in the plain, unpartitioned layout.
    pub index: usize,
    /// The stream key publishers write this partition's share to.
    pub stream: String,
    /// Where this partition's dead letters go: the same slot, so the move is atomic.
    pub dlq: String,
}

impl Partition {
    /// The ownership lease of ordered pool `pool` on this partition.
    pub fn owner_key(&self, pool: &str) -> String {
        owner(&self.stream, pool)
    }

    /// The progress hash of replay job `job` on this partition.
    pub fn replay_key(&self, job: &str) -> String {
        replay_job(&self.stream, job)
    }

    /// The dedup key of publisher id `id` on this partition.
    pub fn dedup_key(&self, id: &str) -> String {
        dedup(&self.stream, id)
    }

    /// This partition's set of delayed events.
    pub fn scheduled_key(&self) -> String {
        scheduled(&self.stream)
    }
}

/// The DLQ of a partitioned stream is neither under the stream's hash tag nor its name, so
/// the partitions' DLQ keys cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqOutsideStream;

/// The partition list of stream `name` with DLQ `dlq` spread over `count` keys. One
/// partition (or `count` 0) is the plain layout: the keys as they are.
pub fn partitions(name: &str, dlq: &str, count: usize) -> Result<Vec<Partition>, DlqOutsideStream> {
    if count <= 1 {
        return Ok(vec![Partition {
            index: 0,
            stream: name.to_string(),
            dlq: dlq.to_string(),
        }]);
    }
    (0..count)
        .map(|index| {
            Ok(Partition {
                index,
                stream: partition_key(name, name, index).ok_or(DlqOutsideStream)?,
                dlq: partition_key(name, dlq, index).ok_or(DlqOutsideStream)?,
            })
        })
        .collect()
}

/// A partition whose stream and DLQ hash to different cluster slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMismatch<'a> {
    pub partition: &'a Partition,
    pub stream_slot: u16,
    pub dlq_slot: u16,
}

/// The first partition whose stream and DLQ land in different slots under `slot` (the
/// cluster's key-slot function), if any. Moving an entry to the DLQ is one atomic step,
/// which Redis Cluster only allows within one slot.
pub fn slot_mismatch(
    partitions: &[Partition],
    slot: impl Fn(&str) -> u16,
) -> Option<SlotMismatch<'_>> {
    partitions.iter().find_map(|partition| {
        let (stream_slot, dlq_slot) = (slot(&partition.stream), slot(&partition.dlq));
        (stream_slot != dlq_slot).then_some(SlotMismatch {
            partition,
            stream_slot,
            dlq_slot,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_keys() {
        assert_eq!(default_dlq("bus"), "bus:dlq");
        assert_eq!(paused("bus"), "bus:paused");
        assert_eq!(replay_job("bus", "j1"), "bus:replay:j1");
        assert_eq!(dedup("bus", "EV-1"), "bus:dedup:EV-1");
        assert_eq!(scheduled("{bus}:events"), "{bus}:events:scheduled");
        assert_eq!(owner("bus", "bus-incident"), "bus:owner:bus-incident");
        assert_eq!(monitor("bus"), "bus:monitor");
        assert_eq!(telemetry("bus", "aws-config"), "bus:telemetry:aws-config");
        assert_eq!(telemetry_index("{bus}:events"), "{bus}:events:telemetry");
    }

    #[test]
    fn hash_tags() {
        assert_eq!(hash_tag("{bus}:events"), Some("bus"));
        assert_eq!(hash_tag("a{b}c{d}"), Some("b"));
        assert_eq!(hash_tag("{}:events"), None);
        assert_eq!(hash_tag("plain"), None);
        assert_eq!(hash_tag("open{only"), None);
    }

    #[test]
    fn one_partition_is_the_plain_layout() {
        let parts = partitions("bus", "elsewhere", 1).unwrap();
        assert_eq!(
            parts,
            [Partition {
                index: 0,
                stream: "bus".into(),
                dlq: "elsewhere".into()
            }]
        );
    }

    #[test]
    fn partitions_follow_the_tag_or_the_name() {
        let tagged = partitions("{bus}:events", "{bus}:dlq", 2).unwrap();
        assert_eq!(tagged[1].stream, "{bus:1}:events");
        assert_eq!(tagged[1].dlq, "{bus:1}:dlq");
        assert_eq!(tagged[1].owner_key("p"), "{bus:1}:events:owner:p");
        let named = partitions("integration-bus", "integration-bus:dlq", 2).unwrap();
        assert_eq!(named[0].stream, "{integration-bus:0}");
        assert_eq!(named[0].dlq, "{integration-bus:0}:dlq");
        assert_eq!(named[0].dedup_key("x"), "{integration-bus:0}:dedup:x");
        assert_eq!(named[0].replay_key("j"), "{integration-bus:0}:replay:j");
        assert_eq!(partitions("bus", "other:dlq", 2), Err(DlqOutsideStream));
    }

    #[test]
    fn slot_mismatch_names_the_partition() {
        let parts = partitions("a", "b", 1).unwrap();
        let slot = |k: &str| k.len() as u16;
        assert_eq!(slot_mismatch(&parts, slot), None);
        let parts = partitions("a", "bb", 1).unwrap();
        let mismatch = slot_mismatch(&parts, slot).unwrap();
        assert_eq!((mismatch.stream_slot, mismatch.dlq_slot), (1, 2));
        assert_eq!(mismatch.partition.dlq, "bb");
    }
}
