//! `weir schedules [--json]`, `weir schedules pause|resume NAME`: thin callers of
//! `weir::schedule::recurring` (the API's schedules endpoints call the same functions).

use weir::Config;
use weir::schedule::recurring::{self, ScheduleView};

use super::{Outcome, connect, print_json};

/// `weir schedules pause|resume NAME`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Stop a schedule publishing (every engine sees it at its next tick).
    Pause {
        /// A configured schedule's name.
        name: String,
    },
    /// Let a paused schedule publish again; the ticks missed while paused are skipped.
    Resume {
        /// A configured schedule's name.
        name: String,
    },
}

pub async fn run(config: &Config, command: Option<Command>, json: bool) -> Outcome {
    match command {
        None => list(config, json).await,
        Some(Command::Pause { name }) => pause(config, &name, true, json).await,
        Some(Command::Resume { name }) => pause(config, &name, false, json).await,
    }
}

async fn list(config: &Config, json: bool) -> Outcome {
    let redis = connect(config).await?;
    let views = recurring::list(&redis, config).await?;
    if json {
        print_json(&serde_json::json!({ "schedules": views }));
        return Ok(());
    }
    if views.is_empty() {
        println!("no [[schedules]] configured");
        return Ok(());
    }
    println!(
        "{:<24} {:<20} {:<16} {:<22} {:<22} STATE",
        "NAME", "TIMETABLE", "TIMEZONE", "LAST TICK", "NEXT TICK"
    );
    for v in &views {
        println!(
            "{:<24} {:<20} {:<16} {:<22} {:<22} {}",
            v.name,
            v.timetable,
            v.timezone,
            v.last_tick.as_deref().unwrap_or("never"),
            v.next_tick.as_deref().unwrap_or("none"),
            state(v),
        );
    }
    Ok(())
}

fn state(v: &ScheduleView) -> &'static str {
    if v.paused { "paused" } else { "running" }
}

async fn pause(config: &Config, name: &str, paused: bool, json: bool) -> Outcome {
    let redis = connect(config).await?;
    let (view, changed) = recurring::set_paused(&redis, config, name, paused).await?;
    if json {
        print_json(&serde_json::json!({ "schedule": view, "changed": changed }));
    } else if changed {
        println!("{name}: {} (redis-cli HGETALL {})", state(&view), view.key);
    } else {
        println!("{name}: already {}; nothing changed", state(&view));
    }
    Ok(())
}
