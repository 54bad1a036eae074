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
    let scanned = dlq::scan(&redis, &config.stream.dlq, &filter, |entry| {
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
    let _ = out.flush();
    eprintln!(
        "{shown} dead letter(s) listed, {scanned} scanned in {}",
        config.stream.dlq
    );
    Ok(())
}

pub async fn show(config: &Config, id: &str, json: bool) -> Outcome {
    let id = parse_ids(&[id.to_string()])?[0];
    let redis = connect(config).await?;
    let entries = redis
        .range(&config.stream.dlq, &id.to_string(), &id.to_string(), 1)
        .await
        .map_err(runtime)?;
    let Some(entry) = entries.first() else {
        return Err(Failure::runtime(format!(
            "no entry {id} in {}",
            config.stream.dlq
        )));
    };
    let d = DeadLetter::from_entry(entry);
    if json {
        print_json(&serde_json::to_value(&d).unwrap_or_default());
    } else {
        println!("{} in {}", d.id, config.stream.dlq);
        for (k, v) in &d.fields {
            println!("  {k:<14} {v}");
        }
    }
    Ok(())
}

pub async fn stats(config: &Config, selection: &Selection, json: bool) -> Outcome {
    let filter = selection.filter()?;
    let redis = connect(config).await?;
    let stats = dlq::stats(&redis, &config.stream.dlq, &filter)
        .await
        .map_err(runtime)?;
    if json {
        print_json(&serde_json::to_value(&stats).unwrap_or_default());
        return Ok(());
    }
    println!("{} dead letter(s) in {}", stats.total, config.stream.dlq);
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

/// Entries (ID and type) matching `filter`; IDs only, so memory stays small.
async fn matching(
    redis: &Redis,
    config: &Config,
    filter: &Filter,
) -> Result<Vec<(StreamId, String)>, Failure> {
    let mut found = Vec::new();
    dlq::scan(redis, &config.stream.dlq, filter, |entry| {
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
    let targets: Vec<(StreamId, String)> = if ids.is_empty() {
        matching(&redis, config, &selection.filter()?).await?
    } else {
        parse_ids(ids)?
            .into_iter()
            .map(|id| (id, String::new()))
            .collect()
    };
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let (mut moved, mut missing) = (0u64, Vec::new());
    let bar = super::progress(Some(targets.len() as u64), "reprocess");
    for chunk in targets.chunks(dlq::PAGE) {
        bar.inc(chunk.len() as u64);
        if dry_run {
            for (_, ty) in chunk {
                *by_type.entry(ty.clone()).or_default() += 1;
            }
            continue;
        }
        let ids: Vec<StreamId> = chunk.iter().map(|(id, _)| *id).collect();
        let results = redis
            .reprocess(&config.stream.dlq, &config.stream.name, &ids)
            .await
            .map_err(runtime)?;
        for ((id, ty), result) in chunk.iter().zip(results) {
            match result {
                Some(_) => {
                    moved += 1;
                    *by_type.entry(ty.clone()).or_default() += 1;
                }
                None => missing.push(id.to_string()),
            }
        }
    }
    bar.finish_and_clear();
    if json {
        print_json(
            &serde_json::json!({"dryRun": dry_run, "matched": targets.len(), "reprocessed": moved, "missing": missing, "byType": by_type}),
        );
    } else if dry_run {
        println!(
            "dry run: {} dead letter(s) would be reprocessed to {}",
            targets.len(),
            config.stream.name
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
            config.stream.dlq
        )));
    }
    Ok(())
}

pub async fn forget(config: &Config, ids: &[String], json: bool) -> Outcome {
    let ids = parse_ids(ids)?;
    let redis = connect(config).await?;
    let deleted = redis
        .delete(&config.stream.dlq, &ids)
        .await
        .map_err(runtime)?;
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
    let ids: Vec<StreamId> = matching(&redis, config, &filter)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut deleted = 0;
    let bar = super::progress(Some(ids.len() as u64), "purge");
    for chunk in ids.chunks(dlq::PAGE) {
        deleted += redis
            .delete(&config.stream.dlq, chunk)
            .await
            .map_err(runtime)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if json {
        print_json(&serde_json::json!({"purged": deleted}));
    } else {
        println!("purged {deleted} dead letter(s) from {}", config.stream.dlq);
    }
    Ok(())
}
