//! `weir replay`: a new job from flags, or `--resume JOB`.

use weir::Config;
use weir::replay::{Replay, Spec, SpecInput};

use super::{Failure, Outcome, connect, print_json};

/// The flags of `weir replay`.
#[derive(clap::Args)]
pub struct Args {
    /// Start of the range (RFC 3339 with Z or an offset, unix ms, stream ID, now, or -2h);
    /// inclusive. Default: the stream's start.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// End of the range; inclusive. Default: now.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Only this type (repeatable).
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
    /// Only entries whose field FIELD (or value at /json/pointer in data) is VALUE;
    /// repeatable, all must hold.
    #[arg(long = "where", value_name = "FIELD=VALUE")]
    pub conditions: Vec<String>,
    /// Only this pool handles the copies (replay_group).
    #[arg(long, value_name = "POOL")]
    pub group: Option<String>,
    /// Stop after this many matching entries.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Entries per XRANGE page and per write (one script with the progress update).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// At most this many entries published per second.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Count what would be replayed, by type; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue an interrupted job where it stopped.
    #[arg(long, value_name = "JOB", conflicts_with_all = ["since", "until", "types", "conditions", "group", "limit"])]
    pub resume: Option<String>,
    /// Also replay entries that are themselves replays.
    #[arg(long)]
    pub include_replays: bool,
    /// Print one JSON summary instead of human text and a progress bar (for scripts).
    #[arg(long)]
    pub json: bool,
}

fn spec(config: &Config, a: &Args) -> Result<Spec, Failure> {
    Ok(Spec::parse(
        config,
        SpecInput {
            since: a.since.as_deref(),
            until: a.until.as_deref(),
            types: &a.types,
            group: a.group.as_deref(),
            limit: a.limit,
            batch_size: a.batch_size,
            rate: a.rate,
            include_replays: a.include_replays,
            conditions: &a.conditions,
        },
    )?)
}

pub async fn replay(config: &Config, a: Args) -> Outcome {
    let redis = connect(config).await?;
    let mut replay = match &a.resume {
        Some(id) => Replay::resume(&redis, config, id).await?,
        None => Replay::start(&redis, config, spec(config, &a)?, a.dry_run).await?,
    };
    let (id, key) = (replay.id.clone(), replay.key());
    if !a.dry_run && !a.json {
        let more = match replay.partitions() {
            1 => String::new(),
            n => format!(" and the same job under each of the {n} partitions"),
        };
        eprintln!(
            "replay job {id} (progress: redis-cli HGETALL {key}{more}; resume with --resume {id})"
        );
    }
    let bar = super::progress(None, "replay: scanned");
    // The CLI's job runs to its end; Ctrl-C kills it and `--resume` continues at its cursor.
    let never = tokio_util::sync::CancellationToken::new();
    let result = replay
        .run(&redis, &never, |p| {
            bar.set_position(p.scanned);
            bar.set_message(format!(
                "replay: matched {}, published {}; scanned",
                p.matched, p.published
            ));
        })
        .await;
    bar.finish_and_clear();
    let p = result.map_err(|e| {
        Failure::runtime(format!(
            "{e}; progress is saved, continue with: weir replay --resume {id}"
        ))
    })?;
    if p.status == weir::replay::TAKEN_OVER {
        return Err(Failure::runtime(format!(
            "replay job {id} was resumed by another run, which carries on from its cursor; this run stopped after publishing {} (nothing is published twice)",
            p.published
        )));
    }
    if a.json {
        print_json(&serde_json::json!({
            "job": id, "dryRun": a.dry_run, "status": p.status, "scanned": p.scanned,
            "matched": p.matched, "published": p.published, "byType": p.by_type, "key": key,
            "partitions": replay.partitions(),
        }));
    } else if a.dry_run {
        println!(
            "dry run: {} scanned, {} would be replayed",
            p.scanned, p.matched
        );
        for (t, n) in &p.by_type {
            println!("  {t:<24} {n}");
        }
    } else {
        println!(
            "replay {id} done: {} scanned, {} matched, {} published to {}",
            p.scanned, p.matched, p.published, config.stream.name
        );
    }
    Ok(())
}
