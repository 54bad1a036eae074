//! Runs a program per event: `data` on stdin, metadata in the environment. Exit 0 is success,
//! 65 (EX_DATAERR) is permanent, anything else is retried. The child dies with its future, so a
//! timeout kills it.

use std::collections::BTreeMap;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Delivery, Handler, Outcome};

/// Exit status meaning "this input will never work".
const EX_DATAERR: i32 = 65;
/// How much of stderr's tail becomes the error.
const STDERR_TAIL: usize = 1024;

pub struct ExecHandler {
    command: Vec<String>,
    env: BTreeMap<String, String>,
}

impl ExecHandler {
    pub fn new(command: Vec<String>, env: BTreeMap<String, String>) -> ExecHandler {
        ExecHandler { command, env }
    }

    fn command(&self, d: &Delivery) -> Option<Command> {
        let (program, args) = self.command.split_first()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(&self.env)
            .env("WEIR_TYPE", &d.event_type)
            .env("WEIR_ENTRY_ID", d.entry_id.to_string())
            .env("WEIR_ATTEMPT", d.attempt.to_string())
            .env("WEIR_POOL", &*d.pool)
            .env("WEIR_EVENT_ID", d.event_id.as_deref().unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Some(cmd)
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

#[async_trait::async_trait]
impl Handler for ExecHandler {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let Some(mut cmd) = self.command(d) else {
            return Outcome::permanent("exec handler has an empty command");
        };
        let program = &self.command[0];
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return Outcome::retry(format!("cannot start `{program}`: {e}")),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A child that exits without reading stdin is not an error of ours.
            let _ = stdin.write_all(d.data.as_bytes()).await;
        }
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_end(&mut stderr).await;
        }
        let status = match child.wait().await {
            Ok(status) => status,
            Err(e) => return Outcome::retry(format!("waiting for `{program}`: {e}")),
        };
        let describe = |what: String| {
            let tail = tail(&stderr);
            if tail.is_empty() {
                what
            } else {
                format!("{what}: {tail}")
            }
        };
        match status.code() {
            Some(0) => Outcome::Success,
            Some(EX_DATAERR) => Outcome::permanent(describe(format!("`{program}` exited 65"))),
            Some(code) => Outcome::retry(describe(format!("`{program}` exited {code}"))),
            None => Outcome::retry(describe(format!("`{program}` was killed by a signal"))),
        }
    }
}
