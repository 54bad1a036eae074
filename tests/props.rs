//! Property tests of the input-facing code: whatever bytes arrive, decoding, routing,
//! validation and time parsing return an answer and never panic.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use weir::dispatch::{Decision, Router};
use weir::redis::{RawEntry, StreamId};
use weir::schema::Schemas;

use crate::support::*;

fn schemas() -> Arc<Schemas> {
    Arc::new(Schemas::load(Some(&repo().join("schemas"))).unwrap())
}

fn field_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"type".to_vec()),
        Just(b"data".to_vec()),
        Just(b"id".to_vec()),
        Just(b"replay_group".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

fn field_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"incident.event".to_vec()),
        Just(b"a".to_vec()),
        Just(b"p".to_vec()),
        Just(b"{}".to_vec()),
        Just(envelope("incident.event").into_bytes()),
        "\\PC{0,40}".prop_map(|s| s.into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_and_routing_any_entry_gives_an_answer(
        fields in proptest::collection::vec((field_name(), field_value()), 0..8),
        pool in 0usize..3,
    ) {
        let entry = RawEntry {
            id: StreamId { ms: 1, seq: 0 },
            fields: Some(fields.into_iter().map(|(k, v)| (Bytes::from(k), Bytes::from(v))).collect()),
        };
        let config = config("[stream]\nmax_entry_bytes = 200\n[[pools]]\nname = \"p\"\ntypes = [\"incident.event\"]\n[[pools]]\nname = \"q\"\ntypes = [\"a\"]\n[[pools]]\nname = \"r\"\ntypes = [\"*\"]\n");
        let router = Router::new(&config, schemas());
        match router.decide(pool, &entry) {
            Decision::Handle(event) => {
                prop_assert!(!event.event_type.is_empty());
                prop_assert!(serde_json::from_str::<serde_json::Value>(&event.data).is_ok());
            }
            Decision::DeadLetter { error, .. } => prop_assert!(!error.is_empty()),
            Decision::Skip => {}
        }
        let _ = weir::envelope::decode(&entry);
    }

    #[test]
    fn validating_any_text_gives_an_answer(data in "\\PC{0,200}", deep in 0usize..2000) {
        let schemas = schemas();
        let _ = schemas.check("incident.event", &data);
        let nested = format!("{}{}", "{\"a\":".repeat(deep), "}".repeat(deep));
        let _ = schemas.check("incident.event", &nested);
    }

    #[test]
    fn time_specs_parse_or_explain(text in "\\PC{0,30}") {
        for bound in [weir::timespec::Bound::Since, weir::timespec::Bound::Until] {
            if let Err(message) = weir::timespec::parse(&text, bound) {
                prop_assert!(!message.is_empty());
            }
        }
    }

    #[test]
    fn stream_ids_round_trip(ms in any::<u64>(), seq in any::<u64>()) {
        let id = StreamId { ms, seq };
        prop_assert_eq!(StreamId::parse(&id.to_string()), Some(id));
        prop_assert!(id < id.next() || (ms == u64::MAX && seq == u64::MAX));
    }

    #[test]
    fn the_telemetry_value_comes_out_of_the_same_body_check(
        data in body(),
        with_schemas in any::<bool>(),
    ) {
        let schemas = if with_schemas { schemas() } else { Arc::new(Schemas::default()) };
        let base = "[[pools]]\nname = \"p\"\ntypes = [\"*\"]\n";
        let plain = Router::new(&config(base), schemas.clone());
        let counting = Router::new(
            &config(&format!("{base}[telemetry]\nkey = \"/k\"\n")),
            schemas,
        );
        let entry = RawEntry {
            id: StreamId { ms: 1, seq: 0 },
            fields: Some(vec![
                (Bytes::from_static(b"type"), Bytes::from_static(b"a.b")),
                (Bytes::from_static(b"data"), Bytes::from(data.clone())),
            ]),
        };
        match (plain.decide(0, &entry), counting.decide(0, &entry)) {
            (Decision::Handle(_), Decision::Handle(event)) => {
                let parsed: serde_json::Value = serde_json::from_str(&data).expect("handled, so JSON");
                let expected = weir::envelope::text_at(&parsed, "/k").map(|t| t.into_owned());
                let found = event.telemetry.as_ref().and_then(|f| f.text(&event.data));
                prop_assert_eq!(found, expected.as_deref());
            }
            (
                Decision::DeadLetter { reason, error },
                Decision::DeadLetter { reason: counted_reason, error: counted_error },
            ) => {
                prop_assert_eq!(reason, counted_reason);
                prop_assert_eq!(error, counted_error);
            }
            (plain, counting) => prop_assert!(false, "{plain:?} became {counting:?}"),
        }
    }
}

/// JSON bodies with a `k` somewhere, broken ones among them, and arbitrary text.
fn body() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("\"v\"".to_string()),
        Just("7".to_string()),
        Just("-1.5e3".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("[1,\"k\"]".to_string()),
        Just("{\"k\":\"inner\"}".to_string()),
        Just("\"a\\\"b\\u00e9\"".to_string()),
        "\\PC{0,8}",
    ];
    prop_oneof![
        value.clone().prop_map(|v| format!("{{\"k\":{v}}}")),
        value
            .clone()
            .prop_map(|v| format!("{{\"x\":[1,{{}}],\"k\":{v},\"y\":\"z\"}}")),
        value
            .clone()
            .prop_map(|v| format!("{{\"k\":\"first\",\"k\":{v}}}")),
        value.clone().prop_map(|v| format!("{{\"k\":{v}")),
        value
            .clone()
            .prop_map(|v| format!("{{\"k\":{v}}} trailing")),
        value.prop_map(|v| format!("[{v}]")),
        "\\PC{0,40}",
    ]
}
