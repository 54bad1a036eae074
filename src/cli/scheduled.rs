//! `weir scheduled list|cancel`: parse, call [`weir::schedule::delayed`], print.

use std::io::Write;

use weir::Config;
use weir::schedule::delayed::{self, Cursor, ScheduledEvent};

use super::{Failure, Outcome, connect, print_json};

/// Events read per page while listing.
const PAGE: usize = 500;

fn row(e: &ScheduledEvent) -> String {
    let data = e.fields.get("data").map(String::as_str).unwrap_or_default();
    let data: String = data
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(60)
        .collect();
    format!(
        "{:<24} {:<32} {:<24} {}",
        e.due_at, e.id, e.event_type, data
    )
}

/// `weir scheduled list [--type T]… [--limit N] [--json]`: soonest first, page by page.
pub async fn list(config: &Config, types: &[String], limit: Option<usize>, json: bool) -> Outcome {
    let redis = connect(config).await?;
    let limit = limit.unwrap_or(usize::MAX);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let failed = |e: std::io::Error| Failure::runtime(format!("cannot write to stdout: {e}"));
    if !json {
        writeln!(out, "{:<24} {:<32} {:<24} DATA", "DUE", "ID", "TYPE").map_err(failed)?;
    }
    let (mut shown, mut after): (usize, Option<Cursor>) = (0, None);
    while shown < limit {
        let page = delayed::page(
            &redis,
            &config.stream,
            types,
            PAGE.min(limit - shown),
            after,
        )
        .await
        .map_err(super::redis_failure)?;
        for e in &page.entries {
            if json {
                let line = serde_json::to_string(e).map_err(|e| Failure::runtime(e.to_string()))?;
                writeln!(out, "{line}").map_err(failed)?;
            } else {
                writeln!(out, "{}", row(e)).map_err(failed)?;
            }
        }
        shown += page.entries.len();
        match page.next.map(|n| n.parse::<Cursor>()) {
            Some(Ok(next)) => after = Some(next),
            _ => break,
        }
    }
    out.flush().map_err(failed)?;
    if !json {
        println!(
            "{shown} delayed event(s) shown (soonest first; cancel with weir scheduled cancel ID)"
        );
    }
    Ok(())
}

/// `weir scheduled cancel ID…`: exit 2 naming the ids no set held.
pub async fn cancel(config: &Config, ids: &[String], json: bool) -> Outcome {
    let redis = connect(config).await?;
    let done = delayed::cancel(&redis, config, ids).await?;
    if json {
        print_json(&serde_json::json!({"cancelled": done.cancelled, "missing": done.missing}));
    } else {
        println!("cancelled {} delayed event(s)", done.cancelled);
    }
    if done.missing.is_empty() {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "not scheduled (moved to the stream already, cancelled, or never scheduled): {}",
        done.missing.join(", ")
    )))
}
