//! `weir dlq list|show|stats|reprocess|forget|purge`: parse, call [`weir::dlq`], print.

use std::io::Write;
use std::ops::ControlFlow;

use weir::Config;
use weir::dlq::{self, DeadLetter, Filter, FilterInput, Selection as Chosen};
use weir::vocab::LetterId;

use super::{Failure, Outcome, connect, print_json};

/// The filter flags shared by the subcommands.
pub struct Selection {
    pub types: Vec<String>,
    pub reason: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub grep: Option<String>,
    /// `--where` conditions.
    pub conditions: Vec<String>,
}

impl Selection {
    pub fn filter(&self) -> Result<Filter, Failure> {
        Ok(Filter::parse(FilterInput {
            types: &self.types,
            reason: self.reason.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
            grep: self.grep.as_deref(),
            group: None,
            conditions: &self.conditions,
        })?)
    }
}

/// Dead-letter IDs as `weir dlq list` shows them: bare, or `<partition>/<entry ID>`.
fn parse_ids(ids: &[String]) -> Result<Vec<LetterId>, Failure> {
    ids.iter()
        .map(|id| id.parse().map_err(Failure::usage))
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

fn row(d: &DeadLetter) -> String {
    format!(
        "{:<20} {:<20} {:<13} {:<14} {:>3}  {}",
        d.id,
        one_line(&d.event_type, 20),
        d.reason,
        d.group,
        d.attempts,
        one_line(&d.error, 80)
    )
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
    let scanned = dlq::visit(&redis, config, &filter, |d| {
        if shown >= limit {
            return false;
        }
        let line = if json {
            serde_json::to_string(&d).unwrap_or_default()
        } else {
            row(&d)
        };
        shown += 1;
        writeln!(out, "{line}").is_ok() && shown < limit
    })
    .await?;
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
    let Some((key, d)) = dlq::find(&redis, config, id).await? else {
        return Err(Failure::runtime(format!(
            "no entry {id} in {}",
            dlq_label(config)
        )));
    };
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
    let stats = dlq::stats_all(&redis, config, &filter).await?;
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

/// The DLQ as messages name it: the key, or the key and the partition count.
fn dlq_label(config: &Config) -> String {
    match config.stream.partitions {
        1 => config.stream.dlq.clone(),
        n => format!("{} ({n} partitions)", config.stream.dlq),
    }
}

/// What the flags select: IDs, or a filter (`--type`…, or `--all` for everything).
fn chosen(ids: &[String], all: bool, selection: &Selection) -> Result<Chosen, Failure> {
    if ids.is_empty() && selection.types.is_empty() && !all {
        return Err(Failure::usage(
            "say what to reprocess: entry IDs, --type T (repeatable) or --all",
        ));
    }
    if !ids.is_empty() && (all || !selection.types.is_empty()) {
        return Err(Failure::usage("give entry IDs or --type/--all, not both"));
    }
    Ok(if ids.is_empty() {
        Chosen::Matching(selection.filter()?)
    } else {
        Chosen::Ids(parse_ids(ids)?)
    })
}

pub async fn reprocess(
    config: &Config,
    ids: &[String],
    all: bool,
    selection: &Selection,
    dry_run: bool,
    json: bool,
) -> Outcome {
    let chosen = chosen(ids, all, selection)?;
    let redis = connect(config).await?;
    let bar = super::progress(None, "reprocess: moved");
    let done = dlq::reprocess(&redis, config, &chosen, dry_run, |d| {
        bar.set_position(d.moved);
        ControlFlow::Continue(())
    })
    .await?;
    bar.finish_and_clear();
    if json {
        print_json(&serde_json::json!({
            "dryRun": dry_run, "matched": done.matched, "reprocessed": done.moved,
            "missing": done.missing, "skipped": done.skipped, "byType": done.by_type,
            "complete": done.complete, "stopped": done.stopped,
        }));
    } else if dry_run {
        println!(
            "dry run: {} dead letter(s) would be reprocessed to {}",
            done.matched, config.stream.name
        );
        for (t, n) in &done.by_type {
            println!("  {:<24} {n}", if t.is_empty() { "(by id)" } else { t });
        }
    } else {
        println!(
            "reprocessed {} dead letter(s) to {}; {} not found (already reprocessed or forgotten)",
            done.moved,
            config.stream.name,
            done.missing.len()
        );
        for id in &done.missing {
            println!("  not found: {id}");
        }
        for s in &done.skipped {
            println!("  skipped: {}: {}", s.id, s.error);
        }
    }
    if let Some(why) = &done.stopped {
        return Err(Failure::runtime(format!(
            "stopped early after moving {}: {why}",
            done.moved
        )));
    }
    if !done.skipped.is_empty() {
        return Err(Failure::runtime(format!(
            "{} dead letter(s) could not be moved and stay in {} (listed above, each with why)",
            done.skipped.len(),
            dlq_label(config)
        )));
    }
    if !done.missing.is_empty() && !ids.is_empty() {
        return Err(Failure::runtime(format!(
            "{} of the given IDs are not in {}",
            done.missing.len(),
            dlq_label(config)
        )));
    }
    Ok(())
}

pub async fn forget(config: &Config, ids: &[String], json: bool) -> Outcome {
    let ids = parse_ids(ids)?;
    let redis = connect(config).await?;
    let deleted = dlq::forget(&redis, config, &ids).await?;
    if json {
        print_json(&serde_json::json!({"forgotten": deleted, "requested": ids.len()}));
    } else {
        println!("forgot {deleted} of {} dead letter(s)", ids.len());
    }
    Ok(())
}

pub async fn purge(
    config: &Config,
    types: &[String],
    conditions: &[String],
    yes: bool,
    json: bool,
) -> Outcome {
    if !yes {
        return Err(Failure::usage(
            "purge deletes dead letters for good; add --yes to confirm (see `weir dlq stats` first)",
        ));
    }
    let filter = Filter {
        types: types.to_vec(),
        conditions: weir::conditions::Conditions::parse(conditions)?,
        ..Filter::default()
    };
    let redis = connect(config).await?;
    let bar = super::progress(None, "purge");
    let done = dlq::purge(&redis, config, &filter, |d| {
        bar.set_position(d.deleted);
        ControlFlow::Continue(())
    })
    .await?;
    bar.finish_and_clear();
    if json {
        print_json(&serde_json::json!({
            "purged": done.deleted, "byType": done.by_type,
            "complete": done.complete, "stopped": done.stopped,
        }));
    } else {
        println!(
            "purged {} dead letter(s) from {}",
            done.deleted,
            dlq_label(config)
        );
        for (t, n) in &done.by_type {
            println!("  {:<24} {n}", if t.is_empty() { "(none)" } else { t });
        }
    }
    match done.stopped {
        Some(why) => Err(Failure::runtime(format!(
            "stopped early after deleting {}: {why}",
            done.deleted
        ))),
        None => Ok(()),
    }
}
