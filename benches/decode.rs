//! Micro-benchmarks of the per-entry CPU work before a handler runs: decoding a raw entry
//! and validating its `data` (1 KB envelope, 64 KB `cyber.metric`), and the JSON parser
//! choice behind `schema::parse_json` (serde_json vs simd-json into a `serde_json::Value`,
//! the type jsonschema validates), and the telemetry key lookup (`[telemetry] key`).
//! Run: `cargo bench --bench decode`.
// criterion_group! generates an undocumented `pub fn`.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weir::dispatch::{Decision, Router};
use weir::redis::{RawEntry, StreamId};
use weir::schema::Schemas;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(kind: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(repo().join(format!("tests/fixtures/valid/{kind}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// An envelope of about `bytes` bytes: the fixture with its payload padded.
fn envelope(kind: &str, bytes: usize) -> String {
    let mut value = fixture(kind);
    if kind == "cyber.metric" {
        let sample = value["payload"]["samples"][0].clone();
        while value.to_string().len() < bytes {
            value["payload"]["samples"]
                .as_array_mut()
                .unwrap()
                .push(sample.clone());
        }
    } else {
        let pad = bytes.saturating_sub(value.to_string().len() + 16);
        value["meta"] = serde_json::json!({ "note": "x".repeat(pad) });
    }
    value.to_string()
}

fn entry(kind: &str, data: &str) -> RawEntry {
    RawEntry {
        id: StreamId { ms: 1, seq: 0 },
        fields: Some(vec![
            (Bytes::from_static(b"type"), Bytes::from(kind.to_string())),
            (Bytes::from_static(b"data"), Bytes::from(data.to_string())),
            (
                Bytes::from_static(b"id"),
                Bytes::from_static(b"01JD8Y9Q3R5S7T9V1W3X5Y7Z9A"),
            ),
        ]),
    }
}

fn benches(c: &mut Criterion) {
    let schemas = Arc::new(Schemas::load(Some(&repo().join("schemas"))).unwrap());
    let config = weir::Config::from_toml(
        "[[pools]]\nname = \"p\"\ntypes = [\"*\"]\n",
        &repo().join("tests/fixtures"),
    )
    .unwrap();
    let with_schemas = Router::new(&config, schemas.clone());
    let without_schemas = Router::new(&config, Arc::new(Schemas::default()));
    // What `[telemetry] key` adds to dispatch without a schema: the syntax check becomes a
    // walk that picks the value out on the way. `{"i":1}` is the body of the e2e benches.
    let counting = |key: &str| {
        let config = weir::Config::from_toml(
            &format!("[telemetry]\nkey = \"{key}\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\n"),
            &repo().join("tests/fixtures"),
        )
        .unwrap();
        Router::new(&config, Arc::new(Schemas::default()))
    };
    {
        let raw = entry("noop.x", r#"{"i":1}"#);
        let mut group = c.benchmark_group("tiny");
        for (name, router) in [
            ("dispatch: syntax only", &without_schemas),
            ("dispatch: syntax only + telemetry /i", &counting("/i")),
        ] {
            group.bench_function(name, |b| {
                b.iter(|| {
                    assert!(matches!(
                        router.decide(0, black_box(&raw)),
                        Decision::Handle(_)
                    ))
                })
            });
        }
        group.finish();
    }
    let with_connector = counting("/connectorKey");
    for (kind, size, label) in [
        ("asset.discovery", 1024, "1KB"),
        ("cyber.metric", 64 * 1024, "64KB"),
    ] {
        let data = envelope(kind, size);
        let raw = entry(kind, &data);
        let mut group = c.benchmark_group(label);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function("dispatch: decode + parse + schema", |b| {
            b.iter(|| {
                assert!(matches!(
                    with_schemas.decide(0, black_box(&raw)),
                    Decision::Handle(_)
                ))
            })
        });
        group.bench_function("dispatch: decode + JSON syntax only (no schema)", |b| {
            b.iter(|| {
                assert!(matches!(
                    without_schemas.decide(0, black_box(&raw)),
                    Decision::Handle(_)
                ))
            })
        });
        group.bench_function("dispatch: syntax only + telemetry /connectorKey", |b| {
            b.iter(|| {
                assert!(matches!(
                    with_connector.decide(0, black_box(&raw)),
                    Decision::Handle(_)
                ))
            })
        });
        group.bench_function("parse: serde_json -> Value", |b| {
            b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&data)).unwrap())
        });
        group.bench_function("parse: simd-json -> serde_json::Value", |b| {
            b.iter(|| {
                let mut bytes = data.as_bytes().to_vec(); // simd-json parses in place
                simd_json::serde::from_slice::<serde_json::Value>(black_box(&mut bytes)).unwrap()
            })
        });
        group.bench_function("syntax: serde_json -> IgnoredAny", |b| {
            b.iter(|| {
                serde_json::from_str::<serde::de::IgnoredAny>(black_box(&data)).unwrap();
            })
        });
        group.bench_function(
            "syntax: simd-json tape (including the copy it needs)",
            |b| {
                b.iter(|| {
                    let mut bytes = data.as_bytes().to_vec();
                    simd_json::to_tape(black_box(&mut bytes)).unwrap().0.len()
                })
            },
        );
        let connector = weir::pointer::Pointer::new("/connectorKey");
        group.bench_function("telemetry: /connectorKey, walked without a Value", |b| {
            b.iter(|| assert!(connector.text_in(black_box(&data)).is_some()))
        });
        let value: serde_json::Value = serde_json::from_str(&data).unwrap();
        group.bench_function("validate: jsonschema on a parsed Value", |b| {
            b.iter(|| assert!(schemas.errors(kind, black_box(&value)).is_empty()))
        });
        group.finish();
    }
}

criterion_group!(decode, benches);
criterion_main!(decode);
