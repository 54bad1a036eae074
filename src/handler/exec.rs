//! Runs a program per event: `data` on stdin, metadata in the environment. Exit 0 is success,
//! 65 (EX_DATAERR) is permanent, 75 (EX_TEMPFAIL) is an overload signal (retried, and an
//! adaptive pool backs off), anything else is retried. The child dies with its future, so a
//! timeout kills it.

use std::collections::BTreeMap;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};

use super::{Delivery, Handler, Outcome};

/// Exit status meaning "this input will never work".
const EX_DATAERR: i32 = 65;
/// Exit status meaning "try again later": the program (or what it calls) is overloaded.
const EX_TEMPFAIL: i32 = 75;
/// How long the error may be, stderr's tail included: what `dlq_error` keeps (it keeps the
/// start of a longer one, and the end of stderr is what explains a failure).
const STDERR_TAIL: usize = 1024;
/// How much of stderr is kept while the child writes: all of it is read (a child blocked on a
/// full pipe would never exit), but only this much of its end stays in memory.
const STDERR_KEEP: usize = 8 * 1024;

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
        // W3C trace context (contract §15); never one inherited from weir's own environment.
        match &d.trace_context {
            Some(context) => {
                cmd.env("TRACEPARENT", context.traceparent());
                match &context.tracestate {
                    Some(state) => cmd.env("TRACESTATE", state),
                    None => cmd.env_remove("TRACESTATE"),
                };
            }
            None => {
                cmd.env_remove("TRACEPARENT").env_remove("TRACESTATE");
            }
        }
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

/// Reads `pipe` to its end, keeping its last [`STDERR_KEEP`] bytes (at most twice that in
/// memory at any time), however much the child writes.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::with_capacity(2 * STDERR_KEEP);
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut chunk = [0u8; 4096];
    // A read error ends the stream: what came before it is still the tail.
    while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
        if kept.len() + n > 2 * STDERR_KEEP {
            kept.drain(..kept.len() + n - STDERR_KEEP);
        }
        kept.extend_from_slice(&chunk[..n]);
    }
    kept
}

/// The last `max` bytes of `bytes` as text, starting on a character boundary.
fn tail(bytes: &[u8], max: usize) -> String {
    let mut start = bytes.len().saturating_sub(max);
    // Skip UTF-8 continuation bytes of a character cut in half.
    while start < bytes.len() && start > 0 && (bytes[start] & 0xC0) == 0x80 {
        start += 1;
    }
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// The delivery's values that go into the child's environment must hold no NUL byte (an
/// environment string ends at one): such an entry can never be run, so it is a permanent
/// failure naming the field, not a spawn error retried forever.
fn nul_in_environment(d: &Delivery) -> Option<Outcome> {
    let field = if d.event_type.contains('\0') {
        "type` (WEIR_TYPE"
    } else if d.event_id.as_deref().is_some_and(|id| id.contains('\0')) {
        "id` (WEIR_EVENT_ID"
    } else {
        return None;
    };
    Some(Outcome::permanent(format!(
        "the entry's `{field}) contains a NUL byte, which cannot be passed to a program in its environment; fix the publisher"
    )))
}

#[async_trait::async_trait]
impl Handler for ExecHandler {
    async fn handle(&self, d: &Delivery) -> Outcome {
        if let Some(refused) = nul_in_environment(d) {
            return refused;
        }
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
            read_tail(child.stderr.take()),
        );
        let status = match child.wait().await {
            Ok(status) => status,
            Err(e) => return Outcome::retry(format!("waiting for `{program}`: {e}")),
        };
        let describe = |what: String| {
            let tail = tail(&stderr, STDERR_TAIL.saturating_sub(what.len() + 2));
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
    use crate::vocab::StreamId;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

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
            trace_context: None,
        }
    }

    #[tokio::test]
    async fn the_trace_context_is_in_the_environment() {
        let script = r#"cat >/dev/null; echo "tp=$TRACEPARENT ts=$TRACESTATE" >&2; exit 1"#;
        let handler = ExecHandler::new(
            vec!["sh".into(), "-c".into(), script.into()],
            BTreeMap::new(),
        );
        let mut d = delivery("{}".into());
        d.trace_context = Some(crate::trace::TraceContext {
            trace_id: [0x4b; 16],
            span_id: [0x01; 8],
            flags: 1,
            tracestate: Some("congo=t61".into()),
        });
        let Outcome::Retry { error, .. } = handler.handle(&d).await else {
            panic!("exit 1 is a retry");
        };
        let expected = format!(
            "tp={} ts=congo=t61",
            d.trace_context
                .as_ref()
                .map(|c| c.traceparent())
                .unwrap_or_default()
        );
        assert!(error.contains(&expected), "{error}");
        d.trace_context = None;
        let Outcome::Retry { error, .. } = handler.handle(&d).await else {
            panic!("exit 1 is a retry");
        };
        assert!(error.contains("tp= ts="), "{error}");
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

#[cfg(test)]
mod bounds {
    use super::*;

    #[tokio::test]
    async fn stderr_is_read_to_its_end_but_only_its_tail_is_kept() {
        // 10 MB, then the line that matters.
        let mut text = vec![b'x'; 10 * 1024 * 1024];
        text.extend_from_slice("\nthe last word: é".as_bytes());
        let kept = read_tail(Some(&text[..])).await;
        assert!(kept.len() <= 2 * STDERR_KEEP, "{} bytes kept", kept.len());
        assert!(
            kept.capacity() <= 2 * STDERR_KEEP,
            "{} bytes held",
            kept.capacity()
        );
        assert!(kept.ends_with("the last word: é".as_bytes()));
        assert!(tail(&kept, 100).ends_with("the last word: é"));
        assert!(read_tail(None::<&[u8]>).await.is_empty());
    }

    #[test]
    fn a_tail_never_starts_inside_a_character() {
        // The cut falls on the second byte of an `é`: that half is skipped, not shown as �.
        let text = format!("{}a", "é".repeat(STDERR_TAIL));
        let shown = tail(text.as_bytes(), STDERR_TAIL);
        assert!(shown.chars().all(|c| c == 'é' || c == 'a'), "{shown}");
        assert_eq!(shown.len(), STDERR_TAIL - 1);
    }
}
