//! Runs a program per event: `data` on stdin, metadata in the environment. Exit 0 is success,
//! 65 (EX_DATAERR) is permanent, 75 (EX_TEMPFAIL) is an overload signal (retried, and an
//! adaptive pool backs off), anything else is retried. The child dies with its future, so a
//! timeout kills it.

use std::collections::BTreeMap;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdin, Command};

use super::{Delivery, Handler, Outcome};

/// Exit status meaning "this input will never work".
const EX_DATAERR: i32 = 65;
/// Exit status meaning "try again later": the program (or what it calls) is overloaded.
const EX_TEMPFAIL: i32 = 75;
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
            .env(
                "WEIR_OWNER_EPOCH",
                d.owner_epoch.map(|e| e.to_string()).unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Some(cmd)
    }
}

/// Writes `data` and closes the pipe so the child sees end of input.
async fn write_stdin(stdin: Option<ChildStdin>, data: &[u8]) {
    if let Some(mut stdin) = stdin {
        // A child that exits without reading stdin is not an error of ours.
        let _ = stdin.write_all(data).await;
    }
}

async fn read_all(pipe: Option<ChildStderr>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes).await;
    }
    bytes
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
        // Both at once: a child that fills the stderr pipe before it reads stdin would otherwise
        // block on its write while we block on ours, until the pool's timeout kills it.
        let ((), stderr) = tokio::join!(
            write_stdin(child.stdin.take(), d.data.as_bytes()),
            read_all(child.stderr.take()),
        );
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
            Some(EX_TEMPFAIL) => {
                Outcome::overloaded(describe(format!("`{program}` exited 75 (overloaded)")))
            }
            Some(code) => Outcome::retry(describe(format!("`{program}` exited {code}"))),
            None => Outcome::retry(describe(format!("`{program}` was killed by a signal"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::redis::StreamId;

    fn delivery(data: String) -> Delivery {
        Delivery {
            pool: Arc::from("cmd"),
            entry_id: StreamId::default(),
            event_type: "big".into(),
            data,
            event_id: None,
            fields: Vec::new(),
            attempt: 1,
            owner_epoch: None,
        }
    }

    #[tokio::test]
    async fn exit_75_signals_overload_and_other_failures_do_not() {
        let run = |code: &str| {
            let script = format!("cat >/dev/null; exit {code}");
            let handler = ExecHandler::new(vec!["sh".into(), "-c".into(), script], BTreeMap::new());
            async move { handler.handle(&delivery("{}".into())).await }
        };
        let overloaded = run("75").await;
        assert!(overloaded.is_overload(), "{overloaded:?}");
        assert!(
            matches!(overloaded, Outcome::Overloaded { ref error, .. } if error.contains("exited 75"))
        );
        let failed = run("3").await;
        assert!(matches!(failed, Outcome::Retry { .. }), "{failed:?}");
        assert!(!run("65").await.is_overload());
    }

    #[tokio::test]
    async fn a_child_that_fills_stderr_before_reading_stdin_does_not_deadlock() {
        // 200 KB on stderr (over a pipe's 64 KiB) before the child reads 200 KB of stdin.
        let script = "head -c 200000 /dev/zero | tr '\\0' e >&2; cat >/dev/null; exit 3";
        let handler = ExecHandler::new(
            vec!["sh".into(), "-c".into(), script.into()],
            BTreeMap::new(),
        );
        let data = format!("\"{}\"", "d".repeat(200_000));
        let outcome =
            tokio::time::timeout(Duration::from_secs(20), handler.handle(&delivery(data)))
                .await
                .expect("the handler finished instead of waiting on full pipes");
        match outcome {
            Outcome::Retry { error, .. } => {
                assert!(error.starts_with("`sh` exited 3: eee"), "{}", &error[..40]);
                assert!(
                    error.len() < STDERR_TAIL + 40,
                    "only the tail: {}",
                    error.len()
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
