//! The read endpoints: status, recent events, the DLQ listing, its stats and one dead letter.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Serialize;

use super::input::Params;
use super::{Api, ApiError};
use crate::dlq::{self, Cursor, DeadLetter, Filter, FilterInput};
use crate::status::Status;
use crate::timespec;
use crate::vocab::{LetterId, RawEntry, StreamId, TYPE};

pub(super) type PairsQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Entries looked at per events request at most: a rare type on a long stream answers a
/// short page (with `next`) instead of scanning for long.
const EVENTS_SCAN_CAP: usize = 10_000;

/// As `weir status --json`.
#[utoipa::path(get, path = "/status", operation_id = "status", tag = "status",
    responses((status = 200, body = Status), (status = 503, body = super::error::ErrorBody)))]
pub async fn status(State(api): State<Arc<Api>>) -> Result<Json<Status>, ApiError> {
    let mut status = crate::status::status(&api.redis, &api.config).await?;
    let running = api.pools.borrow().clone();
    for pool in &mut status.pools {
        pool.rate_waiting = crate::consumer::rate_waiting(&running, &pool.name);
    }
    Ok(Json(status))
}

/// One entry of the main stream.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Event {
    /// The stream entry ID.
    pub id: String,
    /// The `type` field ("" when missing).
    #[serde(rename = "type")]
    pub event_type: String,
    /// Every field as stored (`type` and `data` included).
    pub fields: BTreeMap<String, String>,
}

/// A page of events, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub entries: Vec<Event>,
    /// Pass as `cursor` for the next (older) page; null at the end.
    pub next: Option<String>,
}

/// Query parameters of `GET /events`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventsQuery {
    /// Only this type (repeat, or comma separate, for several).
    #[param(rename = "type")]
    event_type: Option<String>,
    /// TIME (RFC 3339, unix ms, stream ID, or `-2h`): at or after.
    since: Option<String>,
    /// TIME: at or before.
    until: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

fn event(entry: &RawEntry) -> Event {
    let fields = entry.text_fields();
    Event {
        id: entry.id.to_string(),
        event_type: dlq::text(entry, TYPE),
        fields,
    }
}

/// The ID just before `id`.
fn before(id: StreamId) -> Option<StreamId> {
    match (id.ms, id.seq) {
        (0, 0) => None,
        (ms, 0) => Some(StreamId {
            ms: ms - 1,
            seq: u64::MAX,
        }),
        (ms, seq) => Some(StreamId { ms, seq: seq - 1 }),
    }
}

/// Main-stream entries, newest first (partition by partition when the stream is partitioned).
#[utoipa::path(get, path = "/events", operation_id = "listEvents", tag = "events", params(EventsQuery),
    responses((status = 200, body = EventPage), (status = 400, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)))]
pub async fn events(
    State(api): State<Arc<Api>>,
    query: PairsQuery,
) -> Result<Json<EventPage>, ApiError> {
    let p = Params::read(query, &["type", "since", "until", "limit", "cursor"])?;
    let types = p.all("type");
    let (start, end) = timespec::range(p.one("since"), p.one("until"))?;
    let limit = p.limit()?;
    let after = p.cursor()?;
    let mut page = EventPage {
        entries: Vec::new(),
        next: None,
    };
    let mut scanned = 0;
    let parts = api.config.partitions();
    for (index, part) in parts
        .iter()
        .enumerate()
        .skip(after.map_or(0, |c| c.partition))
    {
        let mut top = match after.filter(|c| c.partition == index) {
            Some(c) => before(c.last),
            None => Some(end),
        };
        while let Some(high) = top.filter(|t| *t >= start) {
            let batch = api
                .redis
                .range_rev(&part.stream, &high.to_string(), &start.to_string(), 200)
                .await?;
            let full = batch.len() == 200;
            for entry in &batch {
                scanned += 1;
                top = before(entry.id);
                let wanted = types.is_empty()
                    || types.iter().any(|t| {
                        entry
                            .field(TYPE)
                            .is_some_and(|v| v.as_ref() == t.as_bytes())
                    });
                if wanted {
                    page.entries.push(event(entry));
                }
                if page.entries.len() == limit || scanned == EVENTS_SCAN_CAP {
                    let more = top.is_some() || index + 1 < parts.len();
                    page.next = more.then(|| {
                        Cursor {
                            partition: index,
                            last: entry.id,
                        }
                        .encode()
                    });
                    return Ok(Json(page));
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(Json(page))
}

/// A page of dead letters, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DlqPage {
    pub entries: Vec<DeadLetter>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next: Option<String>,
}

/// Query parameters of `GET /dlq`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DlqQuery {
    /// Only this type (repeat, or comma separate, for several).
    #[param(rename = "type")]
    event_type: Option<String>,
    /// A `dlq_reason` as stored: one of the values of `vocab::DlqReason`.
    reason: Option<String>,
    /// Only dead letters of this pool (`dlq_group`).
    pool: Option<String>,
    /// TIME: failed at or after.
    since: Option<String>,
    /// TIME: failed at or before.
    until: Option<String>,
    /// Case-sensitive text anywhere in the entry's values.
    grep: Option<String>,
    /// `FIELD=VALUE` (an original entry field, e.g. `tenant=acme`) or `/pointer=VALUE` (a
    /// string or number in `data`, e.g. `/tenantId=acme`); repeat for several, all must hold.
    #[param(rename = "where")]
    where_: Option<Vec<String>>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Query parameters of `GET /dlq/stats`: the listing's filter, without paging.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DlqStatsQuery {
    /// Only this type (repeat, or comma separate, for several).
    #[param(rename = "type")]
    event_type: Option<String>,
    /// A `dlq_reason` as stored: one of the values of `vocab::DlqReason`.
    reason: Option<String>,
    /// Only dead letters of this pool (`dlq_group`).
    pool: Option<String>,
    /// TIME: failed at or after.
    since: Option<String>,
    /// TIME: failed at or before.
    until: Option<String>,
    /// Case-sensitive text anywhere in the entry's values.
    grep: Option<String>,
    /// `FIELD=VALUE` or `/pointer=VALUE`; repeat for several, all must hold.
    #[param(rename = "where")]
    where_: Option<Vec<String>>,
}

/// The filter parameters the DLQ listing and stats share.
const FILTER_PARAMS: [&str; 7] = ["type", "reason", "pool", "since", "until", "grep", "where"];

/// The DLQ filter of a query string (see [`FILTER_PARAMS`]).
fn query_filter(api: &Api, p: &Params) -> Result<Filter, ApiError> {
    let types = p.all("type");
    let conditions = p.repeated("where");
    filter(
        api,
        FilterInput {
            conditions: &conditions,
            types: &types,
            reason: p.one("reason"),
            since: p.one("since"),
            until: p.one("until"),
            grep: p.one("grep"),
            group: p.one("pool"),
        },
    )
}

/// The DLQ filter of a query (or body), with the pool checked against the config.
pub fn filter(api: &Api, input: FilterInput<'_>) -> Result<Filter, ApiError> {
    if let Some(pool) = input.group
        && api.config.pool(pool).is_none()
    {
        return Err(ApiError::input(
            "pool",
            format!("`{pool}` is not a configured pool"),
        ));
    }
    Ok(Filter::parse(input)?)
}

/// Dead letters as `weir dlq list --json` objects, paged.
#[utoipa::path(get, path = "/dlq", operation_id = "listDeadLetters", tag = "dlq", params(DlqQuery),
    responses((status = 200, body = DlqPage), (status = 400, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)))]
pub async fn dlq_list(
    State(api): State<Arc<Api>>,
    query: PairsQuery,
) -> Result<Json<DlqPage>, ApiError> {
    let known: Vec<&str> = FILTER_PARAMS
        .iter()
        .chain(&["limit", "cursor"])
        .copied()
        .collect();
    let p = Params::read(query, &known)?;
    let filter = query_filter(&api, &p)?;
    let page = dlq::page(&api.redis, &api.config, &filter, p.cursor()?, p.limit()?).await?;
    Ok(Json(DlqPage {
        entries: page.entries,
        next: page.next.map(|c| c.encode()),
    }))
}

/// Dead-letter counts.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DlqStats {
    pub total: u64,
    pub by_type: BTreeMap<String, u64>,
    pub by_reason: BTreeMap<String, u64>,
    /// By the pool that dead-lettered them (`dlq_group`).
    pub by_pool: BTreeMap<String, u64>,
}

/// Counts by type, reason and pool over every partition's DLQ (or the dead letters the
/// filter matches).
#[utoipa::path(get, path = "/dlq/stats", operation_id = "deadLetterStats", tag = "dlq", params(DlqStatsQuery),
    responses((status = 200, body = DlqStats), (status = 400, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)))]
pub async fn dlq_stats(
    State(api): State<Arc<Api>>,
    query: PairsQuery,
) -> Result<Json<DlqStats>, ApiError> {
    let p = Params::read(query, &FILTER_PARAMS)?;
    let filter = query_filter(&api, &p)?;
    let stats = dlq::stats_all(&api.redis, &api.config, &filter).await?;
    Ok(Json(DlqStats {
        total: stats.total,
        by_type: stats.by_type,
        by_reason: stats.by_reason,
        by_pool: stats.by_group,
    }))
}

/// A dead letter's ID from the path (`%2F` decoded): 400 unless it is an entry ID, bare or
/// qualified with its partition.
pub fn dead_letter_id(id: &str) -> Result<LetterId, ApiError> {
    id.parse().map_err(|e: String| ApiError::input("id", e))
}

/// One dead letter.
#[utoipa::path(get, path = "/dlq/{id}", operation_id = "showDeadLetter", tag = "dlq",
    params(("id" = String, Path, description = "The dead letter's ID as the listing gives it: `1700000000000-0`, or with partitions `<partition>/<entry ID>` with the `/` sent as `%2F` (`1%2F1700000000000-0`); a bare ID is taken only where one partition alone holds it")),
    responses((status = 200, body = DeadLetter), (status = 404, body = super::error::ErrorBody),
        (status = 400, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody, description = "a bare ID that several partitions' DLQs hold; `candidates` lists the qualified IDs")))]
pub async fn dlq_show(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    let id = dead_letter_id(&id)?;
    match dlq::find(&api.redis, &api.config, id).await? {
        Some((_, letter)) => Ok(Json(letter)),
        None => Err(ApiError::not_found(format!("no dead letter {id}"))),
    }
}
