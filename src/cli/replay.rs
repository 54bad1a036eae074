//! `weir replay`: a new job from flags, or `--resume JOB`.

use weir::Config;
use weir::replay::{Job, Progress, ReplayError, Spec};
use weir::timespec;

use super::{Failure, Outcome, connect, print_json};

/// The flags of `weir replay`.
#[derive(clap::Args)]
pub struct Args {
    /// Start of the range (RFC 3339, unix ms, stream ID, or -2h); inclusive.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// End of the range; inclusive.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Only this type (repeatable).
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
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
    #[arg(long, value_name = "JOB", conflicts_with_all = ["since", "until", "types", "group", "limit"])]
    pub resume: Option<String>,
    /// Also replay entries that are themselves replays.
    #[arg(long)]
    pub include_replays: bool,
    #[arg(long)]
    pub json: bool,
}

fn spec(config: &Config, a: &Args) -> Result<Spec, Failure> {
    let (Some(since), Some(until)) = (&a.since, &a.until) else {
        return Err(Failure::usage(
            "replay needs --since and --until (or --resume JOB)",
        ));
    };
    let (start, end) = timespec::range(Some(since), Some(until)).map_err(Failure::usage)?;
    if let Some(g) = &a.group
        && config.pool(g).is_none()
    {
        return Err(Failure::usage(format!(
            "--group `{g}` is not a configured pool"
        )));
    }
    if a.batch_size == 0 || a.batch_size > 10_000 {
        return Err(Failure::usage("--batch-size must be between 1 and 10000"));
    }
    if a.rate == Some(0) {
        return Err(Failure::usage("--rate must be at least 1 entry per second"));
    }
    let batch_size = a
        .rate
        .map_or(a.batch_size, |r| a.batch_size.min(r.max(1) as usize));
    Ok(Spec {
        start,
        end,
        types: a.types.clone(),
        group: a.group.clone(),
        limit: a.limit,
        batch_size,
        rate: a.rate,
        include_replays: a.include_replays,
    })
}

fn failure(e: ReplayError) -> Failure {
    match e {
        ReplayError::Redis(e) => Failure::runtime(e.to_string()),
        other => Failure::usage(other.to_string()),
    }
}

pub async fn replay(config: &Config, a: Args) -> Outcome {
    let stream = &config.stream.name;
    let redis = connect(config).await?;
    let mut job = match &a.resume {
        Some(id) => Job::resume(&redis, stream, id).await.map_err(failure)?,
        None => Job::create(&redis, stream, spec(config, &a)?, a.dry_run)
            .await
            .map_err(failure)?,
    };
    let key = weir::replay::job_key(stream, &job.id);
    if !a.dry_run && !a.json {
        eprintln!(
            "replay job {} (progress: redis-cli HGETALL {key}; resume with --resume {})",
            job.id, job.id
        );
    }
    let bar = super::progress(None, "replay: scanned");
    let show = |p: &Progress| {
        bar.set_position(p.scanned);
        bar.set_message(format!(
            "replay: matched {}, published {}; scanned",
            p.matched, p.published
        ));
    };
    let result = job.run(&redis, stream, a.dry_run, show).await;
    bar.finish_and_clear();
    if let Err(e) = result {
        return Err(Failure::runtime(format!(
            "{e}; progress is saved, continue with: weir replay --resume {}",
            job.id
        )));
    }
    let p = &job.progress;
    if a.json {
        print_json(&serde_json::json!({
            "job": job.id, "dryRun": a.dry_run, "status": p.status, "scanned": p.scanned,
            "matched": p.matched, "published": p.published, "byType": p.by_type, "key": key,
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
            "replay {} done: {} scanned, {} matched, {} published to {stream}",
            job.id, p.scanned, p.matched, p.published
        );
    }
    Ok(())
}
