//! `weir dlq list|show|stats|reprocess|forget|purge`.

use std::collections::BTreeMap;
use std::io::Write;

use weir::Config;
use weir::dlq::{self, DeadLetter, Filter};
use weir::redis::{Redis, StreamId};

use super::{Failure, Outcome, connect, print_json};

/// The filter flags shared by the subcommands.
pub struct Selection {
    pub types: Vec<String>,
    pub reason: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub grep: Option<String>,
}

const REASONS: &[&str] = &[
    "max_attempts",
    "rejected",
    "invalid",
    "malformed",
    "too_large",
    "unrouted",
];

impl Selection {
    pub fn filter(&self) -> Result<Filter, Failure> {
        if let Some(r) = &self.reason
            && !REASONS.contains(&r.as_str())
        {
            return Err(Failure::usage(format!(
                "--reason `{r}` is not one of {}",
                REASONS.join(", ")
            )));
        }
        let (start, end) = weir::timespec::range(self.since.as_deref(), self.until.as_deref())
            .map_err(Failure::usage)?;
        Ok(Filter {
            types: self.types.clone(),
            reason: self.reason.clone(),
            start: Some(start),
            end: Some(end),
            grep: self.grep.clone(),
        })
    }
}

fn runtime(e: weir::error::RedisError) -> Failure {
    Failure::runtime(e.to_string())
}

fn parse_ids(ids: &[String]) -> Result<Vec<StreamId>, Failure> {
    ids.iter()
        .map(|id| {
            StreamId::parse(id).ok_or_else(|| {
                Failure::usage(format!(
                    "`{id}` is not a DLQ entry ID (like 1700000000000-0)"
                ))
            })
        })
        .collect()
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

pub async fn list(
    config: &Config,
    selection: &Selection,
    limit: Option<u64>,
    json: bool,
) -> Outcome {
    let filter = selection.filter()?;
    let redis = connect(config).await?;
    let limit = limit.unwrap_or(u64::MAX);
    let mut shown = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !json {
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:<13} {:<14} {:>3}  ERROR",
            "DLQ ID", "TYPE", "REASON", "POOL", "TRY"
        );
    }
    let mut write_failed = false;
    let mut scanned = 0;
    for part in config.stream.partition_list() {
        if write_failed || shown >= limit {
            break;
        }
        scanned += dlq::scan(&redis, &part.dlq, &filter, |entry| {
            let d = DeadLetter::from_entry(&entry);
            let line = if json {
                serde_json::to_string(&d).unwrap_or_default()
            } else {
                format!(
                    "{:<20} {:<20} {:<13} {:<14} {:>3}  {}",
                    d.id,
                    one_line(&d.event_type, 20),
                    d.reason,
                    d.group,
                    d.attempts,
                    one_line(&d.error, 80)
                )
            };
            write_failed = writeln!(out, "{line}").is_err();
            shown += 1;
            !write_failed && shown < limit
        })
        .await
        .map_err(runtime)?;
    }
    let _ = out.flush();
    eprintln!(
        "{shown} dead letter(s) listed, {scanned} scanned in {}",
        dlq_label(config)
    );
    Ok(())
}

pub async fn show(config: &Config, id: &str, json: bool) -> Outcome {
    let id = parse_ids(&[id.to_string()])?[0];
    let redis = connect(config).await?;
    let mut found = None;
    for part in config.stream.partition_list() {
        let entries = redis
            .range(&part.dlq, &id.to_string(), &id.to_string(), 1)
            .await
            .map_err(runtime)?;
        if let Some(entry) = entries.into_iter().next() {
            found = Some((part.dlq, entry));
            break;
        }
    }
    let Some((key, entry)) = found else {
        return Err(Failure::runtime(format!(
            "no entry {id} in {}",
            dlq_label(config)
        )));
    };
    let d = DeadLetter::from_entry(&entry);
    if json {
        print_json(&serde_json::to_value(&d).unwrap_or_default());
    } else {
        println!("{} in {key}", d.id);
        for (k, v) in &d.fields {
            println!("  {k:<14} {v}");
        }
    }
    Ok(())
}

pub async fn stats(config: &Config, selection: &Selection, json: bool) -> Outcome {
    let filter = selection.filter()?;
    let redis = connect(config).await?;
    let dlqs: Vec<String> = config
        .stream
        .partition_list()
        .into_iter()
        .map(|p| p.dlq)
        .collect();
    let stats = dlq::stats(&redis, &dlqs, &filter).await.map_err(runtime)?;
    if json {
        print_json(&serde_json::to_value(&stats).unwrap_or_default());
        return Ok(());
    }
    println!("{} dead letter(s) in {}", stats.total, dlq_label(config));
    for (title, counts) in [
        ("by type", &stats.by_type),
        ("by reason", &stats.by_reason),
        ("by pool", &stats.by_group),
    ] {
        println!("{title}:");
        for (k, n) in counts {
            println!("  {:<24} {n}", if k.is_empty() { "(none)" } else { k });
        }
    }
    Ok(())
}

/// Entries (ID and type) of one partition's DLQ matching `filter`; IDs only, so memory
/// stays small.
async fn matching(
    redis: &Redis,
    dlq_key: &str,
    filter: &Filter,
) -> Result<Vec<(StreamId, String)>, Failure> {
    let mut found = Vec::new();
    dlq::scan(redis, dlq_key, filter, |entry| {
        let ty = entry
            .field("type")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        found.push((entry.id, ty));
        true
    })
    .await
    .map_err(runtime)?;
    Ok(found)
}

/// The DLQ as messages name it: the key, or the key and the partition count.
fn dlq_label(config: &Config) -> String {
    match config.stream.partitions {
        1 => config.stream.dlq.clone(),
        n => format!("{} ({n} partitions)", config.stream.dlq),
    }
}

pub async fn reprocess(
    config: &Config,
    ids: &[String],
    all: bool,
    selection: &Selection,
    dry_run: bool,
    json: bool,
) -> Outcome {
    if ids.is_empty() && selection.types.is_empty() && !all {
        return Err(Failure::usage(
            "say what to reprocess: entry IDs, --type T (repeatable) or --all",
        ));
    }
    if !ids.is_empty() && (all || !selection.types.is_empty()) {
        return Err(Failure::usage("give entry IDs or --type/--all, not both"));
    }
    let redis = connect(config).await?;
    let parts = config.stream.partition_list();
    // Per partition, what to move from its DLQ back to its stream (the same slot). Given
    // IDs are looked for in every partition, in order; what no partition has is missing.
    let mut per_part: Vec<Vec<(StreamId, String)>> = Vec::with_capacity(parts.len());
    for part in &parts {
        per_part.push(if ids.is_empty() {
            matching(&redis, &part.dlq, &selection.filter()?).await?
        } else {
            Vec::new()
        });
    }
    let mut unplaced: Vec<(StreamId, String)> = if ids.is_empty() {
        Vec::new()
    } else {
        parse_ids(ids)?
            .into_iter()
            .map(|id| (id, String::new()))
            .collect()
    };
    let total = if ids.is_empty() {
        per_part.iter().map(Vec::len).sum()
    } else {
        unplaced.len()
    };
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut moved = 0u64;
    let bar = super::progress(Some(total as u64), "reprocess");
    for (part, targets) in parts.iter().zip(per_part) {
        let targets = if ids.is_empty() {
            targets
        } else {
            std::mem::take(&mut unplaced)
        };
        for chunk in targets.chunks(dlq::PAGE) {
            if dry_run {
                bar.inc(chunk.len() as u64);
                for (_, ty) in chunk {
                    *by_type.entry(ty.clone()).or_default() += 1;
                }
                continue;
            }
            let chunk_ids: Vec<StreamId> = chunk.iter().map(|(id, _)| *id).collect();
            let results = redis
                .reprocess(&part.dlq, &part.name, &chunk_ids)
                .await
                .map_err(runtime)?;
            for ((id, ty), result) in chunk.iter().zip(results) {
                match result {
                    Some(_) => {
                        moved += 1;
                        bar.inc(1);
                        *by_type.entry(ty.clone()).or_default() += 1;
                    }
                    None => unplaced.push((*id, ty.clone())),
                }
            }
        }
        if dry_run && !ids.is_empty() {
            break;
        }
    }
    bar.finish_and_clear();
    let missing: Vec<String> = if dry_run {
        Vec::new()
    } else {
        unplaced.iter().map(|(id, _)| id.to_string()).collect()
    };
    if json {
        print_json(
            &serde_json::json!({"dryRun": dry_run, "matched": total, "reprocessed": moved, "missing": missing, "byType": by_type}),
        );
    } else if dry_run {
        println!(
            "dry run: {} dead letter(s) would be reprocessed to {}",
            total, config.stream.name
        );
        for (t, n) in &by_type {
            println!("  {:<24} {n}", if t.is_empty() { "(by id)" } else { t });
        }
    } else {
        println!(
            "reprocessed {moved} dead letter(s) to {}; {} not found (already reprocessed or forgotten)",
            config.stream.name,
            missing.len()
        );
        for id in &missing {
            println!("  not found: {id}");
        }
    }
    if !missing.is_empty() && !ids.is_empty() {
        return Err(Failure::runtime(format!(
            "{} of the given IDs are not in {}",
            missing.len(),
            dlq_label(config)
        )));
    }
    Ok(())
}

pub async fn forget(config: &Config, ids: &[String], json: bool) -> Outcome {
    let ids = parse_ids(ids)?;
    let redis = connect(config).await?;
    let mut deleted = 0;
    for part in config.stream.partition_list() {
        deleted += redis
            .delete_entries(&part.dlq, &ids)
            .await
            .map_err(runtime)?;
    }
    if json {
        print_json(&serde_json::json!({"forgotten": deleted, "requested": ids.len()}));
    } else {
        println!("forgot {deleted} of {} dead letter(s)", ids.len());
    }
    Ok(())
}

pub async fn purge(config: &Config, types: &[String], yes: bool, json: bool) -> Outcome {
    if !yes {
        return Err(Failure::usage(
            "purge deletes dead letters for good; add --yes to confirm (see `weir dlq stats` first)",
        ));
    }
    let redis = connect(config).await?;
    let filter = Filter {
        types: types.to_vec(),
        ..Filter::default()
    };
    let mut deleted = 0;
    let bar = super::progress(None, "purge");
    for part in config.stream.partition_list() {
        let ids: Vec<StreamId> = matching(&redis, &part.dlq, &filter)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for chunk in ids.chunks(dlq::PAGE) {
            deleted += redis
                .delete_entries(&part.dlq, chunk)
                .await
                .map_err(runtime)?;
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();
    if json {
        print_json(&serde_json::json!({"purged": deleted}));
    } else {
        println!("purged {deleted} dead letter(s) from {}", dlq_label(config));
    }
    Ok(())
}
