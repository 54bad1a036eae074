//! Shell completions and man pages, generated from the clap definition itself, so every
//! subcommand (and every one added later) is covered. The Debian package runs these at
//! build time (ops/build-release.sh); operators can too.

use std::path::Path;

use super::{Failure, Outcome};

/// Prints the completion script for `shell` on stdout.
pub fn completions(mut command: clap::Command, shell: clap_complete::Shell) -> Outcome {
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
    Ok(())
}

/// Writes `weir.1` and one page per visible subcommand (`weir-dlq-list.1`, …) into `dir`.
pub fn man(command: clap::Command, dir: &Path) -> Outcome {
    let failed = |e: std::io::Error| {
        Failure::runtime(format!(
            "cannot write man pages into {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(command, dir).map_err(failed)?;
    println!("wrote man pages into {}", dir.display());
    Ok(())
}
