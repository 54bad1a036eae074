use super::*;
use crate::dispatch::{Decision, Router};
use crate::handler::Delivery;
use crate::pointer::Found;
use crate::schema::Schemas;
use crate::settle::Settlement;
use crate::vocab::StreamId;

/// The tallies, fed the way the engine feeds them: dispatch finds each delivery's value
/// (from the entry the delivery was read from), the settle step counts it into its batch.
struct Engine {
    telemetry: Telemetry,
    router: Router,
}

impl Engine {
    fn new(config: &Config) -> Engine {
        Engine {
            telemetry: Telemetry::new(config),
            router: Router::new(config, Arc::new(Schemas::default())),
        }
    }

    /// A one-delivery batch.
    fn settled(&self, pool: &Arc<str>, d: &Delivery, settlement: &Settlement) {
        let mut counts = Counts::default();
        counts.settled(pool, d, self.value(d).as_ref(), settlement);
        self.telemetry.add(&mut counts);
    }

    /// A one-dead-letter batch.
    fn dead_lettered(&self, pool: &Arc<str>, entry: &RawEntry, reason: DlqReason) {
        let mut counts = Counts::default();
        self.telemetry
            .dead_lettered(&mut counts, pool, entry, reason);
        self.telemetry.add(&mut counts);
    }

    fn value(&self, d: &Delivery) -> Option<Found> {
        let mut fields = vec![("type", d.event_type.as_str()), ("data", d.data.as_str())];
        fields.extend(d.event_id.as_deref().map(|id| ("id", id)));
        fields.extend(d.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match self.router.decide(0, &RawEntry::of_texts(&fields)) {
            Decision::Handle(event) => event.telemetry,
            _ => panic!("{d:?} is not handled"),
        }
    }
}

impl std::ops::Deref for Engine {
    type Target = Telemetry;

    fn deref(&self) -> &Telemetry {
        &self.telemetry
    }
}

fn config(telemetry: &str) -> Config {
    let text = format!(
        "[stream]\nname = \"bus\"\nevent_id = \"/id\"\n[telemetry]\n{telemetry}\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n"
    );
    Config::from_toml(&text, std::path::Path::new(".")).expect("test config")
}

fn delivery(seq: u64, ty: &str, data: &str) -> Delivery {
    Delivery {
        pool: "p".into(),
        entry_id: StreamId { ms: 5, seq },
        event_type: ty.into(),
        data: data.into(),
        event_id: Some(format!("E{seq}")),
        fields: vec![("tenant".into(), "acme".into())],
        attempt: 1,
        owner_epoch: None,
        trace_context: None,
    }
}

fn retry() -> Settlement {
    Settlement::Retry {
        after: Duration::from_secs(1),
        error: "503".into(),
    }
}

fn taken(t: &Telemetry) -> HashMap<String, Tally> {
    t.take().into_iter().collect()
}

#[test]
fn counts_per_value_with_the_last_delivery() {
    let t = Engine::new(&config("key = \"/connectorKey\""));
    let pool: Arc<str> = "p".into();
    let aws = r#"{"connectorKey":"aws","id":"X"}"#;
    t.settled(&pool, &delivery(1, "a.b", aws), &Settlement::Ack);
    t.settled(&pool, &delivery(2, "a.b", aws), &retry());
    t.settled(&pool, &delivery(2, "c.d", aws), &Settlement::Ack);
    t.settled(
        &pool,
        &delivery(3, "a.b", r#"{"connectorKey":7}"#),
        &retry(),
    );
    t.settled(
        &pool,
        &delivery(4, "a.b", r#"{"other":1}"#),
        &Settlement::Ack,
    );
    let dead = RawEntry {
        id: StreamId { ms: 6, seq: 0 },
        ..RawEntry::of_texts(&[
            ("type", "x.y"),
            ("data", r#"{"connectorKey":"aws","id":"B"}"#),
        ])
    };
    t.dead_lettered(&pool, &dead, DlqReason::Invalid);
    t.dead_lettered(&pool, &dead, DlqReason::MaxAttempts);
    let all = taken(&t);
    assert_eq!(all.len(), 2, "{all:?}");
    let aws = &all["aws"];
    assert_eq!(
        (aws.received, aws.processed, aws.errored, aws.dead_lettered),
        (4, 2, 1, 2)
    );
    assert_eq!(
        aws.kinds,
        vec![("a.b".to_string(), 2), ("c.d".into(), 1), ("x.y".into(), 1)]
    );
    let last = aws.last.as_ref().expect("a last delivery");
    assert_eq!(last.entry_id, StreamId { ms: 6, seq: 0 });
    assert_eq!(
        last.event_id, "B",
        "the body's id, as [stream] event_id says"
    );
    assert_eq!(last.status, Status::DeadLettered);
    assert_eq!((last.event_type.as_str(), &*last.pool), ("x.y", "p"));
    let seven = &all["7"];
    assert_eq!(
        (seven.received, seven.errored),
        (1, 1),
        "numbers as written"
    );
    assert!(taken(&t).is_empty(), "taking empties the tallies");
}

#[test]
fn field_keys_and_the_off_switch() {
    let pool: Arc<str> = "p".into();
    let t = Engine::new(&config("key = \"tenant\""));
    t.settled(&pool, &delivery(1, "a.b", "{}"), &Settlement::Ack);
    assert_eq!(taken(&t)["acme"].processed, 1);
    let by_type = Engine::new(&config("key = \"type\""));
    by_type.settled(&pool, &delivery(1, "a.b", "{}"), &Settlement::Ack);
    assert_eq!(taken(&by_type)["a.b"].processed, 1);
    let off = Engine::new(&config(""));
    assert!(off.source.is_none());
    off.settled(
        &pool,
        &delivery(1, "a.b", r#"{"connectorKey":"x"}"#),
        &Settlement::Ack,
    );
    assert!(taken(&off).is_empty());
}

#[test]
fn values_are_bounded_in_number_and_length() {
    let t = Engine::new(&config("key = \"/k\"\nmax_values = 3"));
    let pool: Arc<str> = "p".into();
    for i in 0..5 {
        let data = format!(r#"{{"k":"v{i}"}}"#);
        t.settled(&pool, &delivery(i, "a", &data), &Settlement::Ack);
        t.settled(&pool, &delivery(i, "a", &data), &Settlement::Ack);
    }
    let long = format!(r#"{{"k":"{}"}}"#, "x".repeat(MAX_VALUE_BYTES + 1));
    t.settled(&pool, &delivery(9, "a", &long), &Settlement::Ack);
    t.settled(&pool, &delivery(9, "a", r#"{"k":""}"#), &Settlement::Ack);
    assert_eq!(t.drops.over_limit.load(Ordering::Relaxed), 4);
    assert_eq!(t.drops.too_long.load(Ordering::Relaxed), 1);
    let first = taken(&t);
    assert_eq!(first.len(), 3);
    assert!(first.values().all(|tally| tally.processed == 2));
    // A new interval has room again.
    t.settled(&pool, &delivery(1, "a", r#"{"k":"v4"}"#), &Settlement::Ack);
    assert_eq!(taken(&t)["v4"].processed, 1);
}

#[test]
fn kinds_are_bounded_by_the_type_labels_of_metrics() {
    // A `"*"` pool: 100 types by name, then `(other)`.
    let t = Engine::new(&config("key = \"/k\""));
    let pool: Arc<str> = "p".into();
    for i in 0..150 {
        t.settled(
            &pool,
            &delivery(i, &format!("t{i}"), r#"{"k":"v"}"#),
            &Settlement::Ack,
        );
    }
    let kinds = &taken(&t)["v"].kinds;
    assert_eq!(kinds.len(), 101, "{kinds:?}");
    assert!(kinds.contains(&("t0".to_string(), 1)));
    assert!(kinds.contains(&("(other)".to_string(), 50)));
}

#[test]
fn a_batch_that_failed_goes_back_under_newer_counts() {
    let t = Engine::new(&config("key = \"/k\""));
    let pool: Arc<str> = "p".into();
    t.settled(&pool, &delivery(1, "a", r#"{"k":"v"}"#), &Settlement::Ack);
    let failed = t.take();
    t.settled(&pool, &delivery(2, "b", r#"{"k":"v"}"#), &retry());
    t.restore(failed);
    let v = &taken(&t)["v"];
    assert_eq!((v.received, v.processed, v.errored), (2, 1, 1));
    assert_eq!(v.kinds, vec![("b".to_string(), 1), ("a".into(), 1)]);
    let last = v.last.as_ref().expect("last");
    assert_eq!(last.entry_id.seq, 2, "the newer delivery stays the last");
}

#[test]
fn the_hash_update_adds_counters_and_sets_the_last_fields() {
    let t = Engine::new(&config("key = \"/k\""));
    let pool: Arc<str> = "p".into();
    t.settled(&pool, &delivery(1, "a.b", r#"{"k":"v"}"#), &retry());
    let (value, tally) = t.take().pop().expect("one value");
    let delta = tally.delta(keys::telemetry("bus", &value));
    assert_eq!(delta.key, "bus:telemetry:v");
    assert_eq!(
        delta.add,
        vec![
            ("total_received".to_string(), 1),
            ("processed".into(), 0),
            ("errored".into(), 1),
            ("dead_lettered".into(), 0),
            ("kind:a.b".into(), 1),
        ]
    );
    let set: HashMap<&str, &str> = delta.set.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(set["last_entry_id"], "5-1");
    assert_eq!(set["last_event_id"], "E1");
    assert_eq!(set["last_type"], "a.b");
    assert_eq!(set["last_status"], "errored");
    assert_eq!(set["last_pool"], "p");
    assert!(set["last_received_at"].parse::<u64>().expect("unix ms") > 1_600_000_000_000);
}

#[test]
fn a_batch_counts_runs_of_values_and_joins_the_tallies_once() {
    let t = Engine::new(&config("key = \"/k\"\nmax_values = 2"));
    let pool: Arc<str> = "p".into();
    let batch = |deliveries: &[(u64, &str, &str)]| {
        let mut counts = Counts::default();
        for &(seq, k, ty) in deliveries {
            let d = delivery(seq, ty, &format!(r#"{{"k":"{k}"}}"#));
            counts.settled(&pool, &d, t.value(&d).as_ref(), &Settlement::Ack);
        }
        counts
    };
    let mut first = batch(&[(1, "a", "x"), (2, "a", "x"), (3, "b", "y"), (4, "a", "y")]);
    let before = clock::now_ms();
    t.add(&mut first);
    assert!(first.is_empty(), "adding empties the batch");
    let mut second = batch(&[(5, "b", "x"), (6, "c", "x"), (7, "c", "x")]);
    t.add(&mut second);
    assert_eq!(
        t.drops.over_limit.load(Ordering::Relaxed),
        2,
        "both deliveries of the third value"
    );
    let all = taken(&t);
    let a = &all["a"];
    assert_eq!((a.received, a.processed), (3, 3));
    assert_eq!(a.kinds, vec![("x".to_string(), 2), ("y".into(), 1)]);
    let last = a.last.as_ref().expect("last");
    assert_eq!(
        last.entry_id.seq, 4,
        "the batch's last delivery of the value"
    );
    assert!(last.at_ms >= before, "dated as the batch joined");
    let b = &all["b"];
    assert_eq!((b.received, b.kinds.len()), (2, 2));
    assert_eq!(
        b.last.as_ref().expect("last").entry_id.seq,
        5,
        "the newer batch wins"
    );
    assert!(!all.contains_key("c"));
}
