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

/// Creates (or, with `--resume`, reads back) the job of every partition: one job id, one
/// progress hash per partition (`<partition>:replay:<job>`, in the partition's slot).
async fn jobs(
    redis: &weir::redis::Redis,
    config: &Config,
    a: &Args,
) -> Result<Vec<(String, Option<Job>)>, Failure> {
    let parts = config.stream.partition_list();
    let mut jobs = Vec::with_capacity(parts.len());
    match &a.resume {
        Some(id) => {
            for part in parts {
                let job = match Job::resume(redis, &part.name, id).await {
                    Ok(job) => Some(job),
                    Err(ReplayError::Finished(_)) => None,
                    Err(e) => return Err(failure(e)),
                };
                jobs.push((part.name, job));
            }
            if jobs.iter().all(|(_, j)| j.is_none()) {
                return Err(failure(ReplayError::Finished(id.clone())));
            }
        }
        None => {
            let spec = spec(config, a)?;
            let id = weir::replay::new_job_id();
            for part in parts {
                let job = Job::create_as(redis, &part.name, spec.clone(), a.dry_run, id.clone())
                    .await
                    .map_err(failure)?;
                jobs.push((part.name, Some(job)));
            }
        }
    }
    Ok(jobs)
}

pub async fn replay(config: &Config, a: Args) -> Outcome {
    let redis = connect(config).await?;
    let mut jobs = jobs(&redis, config, &a).await?;
    let id = jobs
        .iter()
        .find_map(|(_, j)| j.as_ref().map(|j| j.id.clone()))
        .unwrap_or_default();
    let first_stream = jobs.first().map(|(s, _)| s.clone()).unwrap_or_default();
    let key = weir::replay::job_key(&first_stream, &id);
    if !a.dry_run && !a.json {
        let more = if jobs.len() > 1 {
            format!(
                " and the same job under each of the {} partitions",
                jobs.len()
            )
        } else {
            String::new()
        };
        eprintln!(
            "replay job {id} (progress: redis-cli HGETALL {key}{more}; resume with --resume {id})"
        );
    }
    let bar = super::progress(None, "replay: scanned");
    let mut total = Progress::default();
    let mut limit = jobs
        .iter()
        .find_map(|(_, j)| j.as_ref().and_then(|j| j.spec.limit));
    for (stream, job) in jobs.iter_mut() {
        let Some(job) = job else { continue };
        // One limit for the whole replay: what the partitions before used is gone.
        if let Some(left) = limit {
            job.spec.limit = Some(left);
        }
        let before = total.clone();
        let show = |p: &Progress| {
            bar.set_position(before.scanned + p.scanned);
            bar.set_message(format!(
                "replay: matched {}, published {}; scanned",
                before.matched + p.matched,
                before.published + p.published
            ));
        };
        let result = job.run(&redis, stream, a.dry_run, show).await;
        if let Err(e) = result {
            bar.finish_and_clear();
            return Err(Failure::runtime(format!(
                "{e}; progress is saved, continue with: weir replay --resume {id}"
            )));
        }
        let p = &job.progress;
        total.scanned += p.scanned;
        total.matched += p.matched;
        total.published += p.published;
        total.status = p.status.clone();
        for (t, n) in &p.by_type {
            *total.by_type.entry(t.clone()).or_default() += n;
        }
        limit = limit.map(|l| l.saturating_sub(p.matched));
        if limit == Some(0) {
            break;
        }
    }
    bar.finish_and_clear();
    let p = &total;
    if a.json {
        print_json(&serde_json::json!({
            "job": id, "dryRun": a.dry_run, "status": p.status, "scanned": p.scanned,
            "matched": p.matched, "published": p.published, "byType": p.by_type, "key": key,
            "partitions": jobs.len(),
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
