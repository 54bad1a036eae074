//! The dashboard (contract §11) in a real headless Chromium over WebDriver, against an
//! in-process engine with the admin API and a real redis-server: sign in, pools, pause,
//! DLQ filter and reprocess, replay progress, number fields that refuse text, hostile dead
//! letters shown as text, the read token. Chromium and chromedriver are Debian's
//! (`apt-get install -y chromium chromium-driver`); a missing one fails the test with that
//! command. One browser at a time: the tests take a lock, so a 2-core CI machine is not
//! swamped.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use weir::{Delivery, Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(20);
const ADMIN: &str = "admin-secret-1";
const READ: &str = "read-secret-1";
/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";

/// At most one Chromium at a time in this test binary.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- the engine ------------------------------------------------------------------------

/// redis-server, an engine with the admin API on a free port, and the stream's name.
struct Bus {
    server: RedisServer,
    stream: String,
    base: String,
    running: Option<Running>,
}

impl Bus {
    /// Pools `a` (ordered by the field `key`; types a.one, a.two; rejects `{"fail":true}` unless it is a reprocess) and
    /// `b` (every other type).
    async fn start(test: &str) -> Bus {
        let server = RedisServer::start();
        let stream = stream_name(test);
        let toml = format!(
            r#"
shutdown_grace_seconds = 2
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 2
retry_seconds = 0.1
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"
read_token = "{READ}"
[[pools]]
name = "a"
concurrency = 2
types = ["a.one", "a.two", "hostile"]
order_key = "key"
[[pools]]
name = "b"
concurrency = {{ min = 1, max = 2 }}
types = ["*"]
"#,
            url = server.url(),
        );
        let engine = Engine::new(config(&toml))
            .with_handler("a", Recorder::with(reject_unless_reprocessed))
            .with_handler("b", Recorder::ok());
        let running = run(engine);
        let base = running.url("").await;
        Bus {
            server,
            stream,
            base,
            running: Some(running),
        }
    }

    fn dlq(&self) -> String {
        format!("{}:dlq", self.stream)
    }

    fn cli(&self, args: &[&str]) -> String {
        self.server.cli(args)
    }

    fn xadd(&self, key: &str, fields: &[(&str, &str)]) -> String {
        let mut args = vec!["XADD", key, "*"];
        for (k, v) in fields {
            args.push(k);
            args.push(v);
        }
        self.cli(&args)
    }

    fn len(&self, key: &str) -> u64 {
        self.cli(&["XLEN", key]).parse().unwrap_or(0)
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

fn reject_unless_reprocessed(d: &Delivery) -> Outcome {
    let replayed = d.fields.iter().any(|(k, _)| k == "replay_of");
    if d.event_type == "hostile" {
        return Outcome::permanent(HOSTILE_ERROR);
    }
    if d.data.contains("\"fail\":true") && !replayed {
        return Outcome::permanent(format!("{} refused by the test handler", d.event_type));
    }
    Outcome::Success
}

// ---- the browser -----------------------------------------------------------------------

/// chromedriver on a free port, and a headless Chromium session. chromedriver runs in a
/// process group of its own, which its Chromium inherits: [`Browser::close`] ends the session
/// (Chromium quits), and drop — after a failed assertion too — kills the whole group.
struct Browser {
    client: Client,
    driver: Child,
}

fn binary(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    if Path::new(&path).exists() {
        return path;
    }
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty());
    found.unwrap_or_else(|| {
        panic!("{name} not found: the dashboard tests need Debian's Chromium and its WebDriver; install them with `apt-get install -y chromium chromium-driver`")
    })
}

impl Browser {
    async fn start() -> Browser {
        let chromium = binary("chromium");
        let chromedriver = binary("chromedriver");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver} ({e}); install it with `apt-get install -y chromium chromium-driver`"));
        let mut browser = Browser {
            client: connect(port, &chromium).await,
            driver,
        };
        browser.check_alive();
        browser
    }

    /// Ends the WebDriver session (Chromium quits), then chromedriver.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.driver.try_wait() {
            panic!("chromedriver exited at once ({status})");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver's group: chromedriver, Chromium and Chromium's helpers.
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
    }
}

async fn connect(port: u16, chromium: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + T;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no WebDriver session from chromedriver on {url}: {e}"),
        }
    }
}

fn css(selector: &str) -> Locator<'_> {
    Locator::Css(selector)
}

/// The element, once it exists.
async fn find(c: &Client, selector: &str) -> Element {
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Ok(e) = c.find(css(selector)).await {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no element {selector} within {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The element's rendered text, "" when it is missing.
async fn text(c: &Client, selector: &str) -> String {
    match c.find(css(selector)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until `selector`'s text satisfies `ok`; returns it.
async fn wait_text(c: &Client, selector: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + T;
    loop {
        let t = text(c, selector).await;
        if ok(&t) {
            return t;
        }
        if std::time::Instant::now() >= deadline {
            let notice = text(c, r#"[data-test="notice"]"#).await;
            panic!(
                "timed out waiting for {what}: {selector} reads {t:?}; the page says {notice:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(c: &Client, selector: &str) -> usize {
    c.find_all(css(selector)).await.map_or(0, |v| v.len())
}

async fn wait_count(c: &Client, selector: &str, n: usize) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let got = count(c, selector).await;
        if got == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} of {selector}, see {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(c: &Client, selector: &str) {
    find(c, selector).await.click().await.unwrap();
}

async fn fill(c: &Client, selector: &str, value: &str) {
    let e = find(c, selector).await;
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Opens the page and signs in with `token` (typed, then Enter).
async fn sign_in(c: &Client, bus: &Bus, token: &str) {
    c.goto(&format!("{}/", bus.base)).await.unwrap();
    let input = find(c, r#"[data-test="token"]"#).await;
    input.send_keys(&format!("{token}{ENTER}")).await.unwrap();
    wait_text(c, r#"[data-test="stream-length"]"#, "the overview", |t| {
        t.parse::<u64>().is_ok()
    })
    .await;
}

fn pool_row(name: &str) -> String {
    format!(r#"[data-test="pool-row"][data-pool="{name}"]"#)
}

fn dlq_row(id: &str) -> String {
    format!(r#"[data-test="dlq-row"][data-id="{id}"]"#)
}

/// A PNG of the page; saved into `docs/` (the README shows them) when `WEIR_SCREENSHOTS` is
/// set, so an ordinary test run leaves the checkout clean.
async fn screenshot(c: &Client, name: &str, section: &str) {
    c.execute(
        "document.getElementById(arguments[0]).scrollIntoView()",
        vec![json!(section)],
    )
    .await
    .unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    if std::env::var_os("WEIR_SCREENSHOTS").is_none() {
        return;
    }
    let dir = repo().join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

// ---- the tests -------------------------------------------------------------------------

#[tokio::test]
async fn signs_in_shows_every_pool_and_pauses_one_in_redis_and_on_the_page() {
    let _one = BROWSER.lock().await;
    let bus = Bus::start("dash-pools").await;
    for i in 0..3 {
        bus.xadd(
            &bus.stream,
            &[("type", "b.thing"), ("data", &format!("{{\"n\":{i}}}"))],
        );
    }
    let browser = Browser::start().await;
    let c = &browser.client;
    sign_in(c, &bus, ADMIN).await;
    wait_count(c, r#"[data-test="pool-row"]"#, 2).await;
    for name in ["a", "b"] {
        let state = format!(r#"{} [data-test="state"]"#, pool_row(name));
        wait_text(c, &state, "a running pool", |t| t == "running").await;
    }
    wait_text(
        c,
        r#"[data-test="stream-length"]"#,
        "the stream length",
        |t| t == "3",
    )
    .await;
    assert_eq!(text(c, r#"[data-test="dlq-length"]"#).await, "0");
    // The ordered pool shows its lease holder and epoch; the other has no owner.
    let owner_a = format!(r#"{} [data-test="owner"]"#, pool_row("a"));
    wait_text(c, &owner_a, "a's owner / epoch", |t| {
        t.contains(" / ") && !t.starts_with("none")
    })
    .await;
    assert_eq!(
        text(c, &format!(r#"{} [data-test="owner"]"#, pool_row("b"))).await,
        "–"
    );
    // A fixed pool shows its concurrency; an adaptive one its bounds and the current value.
    assert_eq!(
        text(
            c,
            &format!(r#"{} [data-test="concurrency"]"#, pool_row("a"))
        )
        .await,
        "2"
    );
    let adaptive = format!(r#"{} [data-test="concurrency"]"#, pool_row("b"));
    wait_text(c, &adaptive, "b's adaptive concurrency", |t| {
        t == "1–2 (now 1)"
    })
    .await;

    click(c, &format!(r#"{} [data-test="pause"]"#, pool_row("b"))).await;
    let paused_key = format!("{}:paused", bus.stream);
    wait_for("b in the paused set", T, || async {
        bus.cli(&["SMEMBERS", &paused_key]) == "b"
    })
    .await;
    let state_b = format!(r#"{} [data-test="state"]"#, pool_row("b"));
    wait_text(c, &state_b, "b shown paused", |t| t == "paused").await;
    let state_a = format!(r#"{} [data-test="state"]"#, pool_row("a"));
    assert_eq!(text(c, &state_a).await, "running");
    screenshot(c, "dashboard-overview.png", "overview").await;

    // A pause by hand (redis-cli) shows up too, and resume clears both.
    bus.cli(&["SADD", &paused_key, "a"]);
    wait_text(c, &state_a, "a paused by hand", |t| t == "paused").await;
    click(c, &format!(r#"{} [data-test="resume"]"#, pool_row("b"))).await;
    wait_for("b resumed in Redis", T, || async {
        bus.cli(&["SMEMBERS", &paused_key]) == "a"
    })
    .await;
    wait_text(c, &state_b, "b shown running", |t| t == "running").await;

    // At phone width the page does not overflow sideways (wide tables scroll in place).
    c.set_window_size(390, 844).await.unwrap();
    let fits = js(
        c,
        "return document.documentElement.scrollWidth <= window.innerWidth + 1",
    )
    .await;
    assert_eq!(fits, json!(true), "the page overflows at phone width");
    assert!(find(c, &pool_row("a")).await.is_displayed().await.unwrap());
    browser.close().await;
    bus.stop().await;
}

#[tokio::test]
async fn filters_the_dlq_then_reprocesses_a_selected_entry_and_everything_matching() {
    let _one = BROWSER.lock().await;
    let bus = Bus::start("dash-dlq").await;
    for ty in ["a.one", "a.two", "a.one"] {
        bus.xadd(&bus.stream, &[("type", ty), ("data", r#"{"fail":true}"#)]);
    }
    let dlq = bus.dlq();
    wait_for("three dead letters", T, || async { bus.len(&dlq) == 3 }).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    sign_in(c, &bus, ADMIN).await;
    wait_count(c, r#"[data-test="dlq-row"]"#, 3).await;

    fill(c, r#"[data-test="dlq-type"]"#, "a.two").await;
    find(c, r#"[data-test="dlq-reason"]"#)
        .await
        .select_by_value("rejected")
        .await
        .unwrap();
    click(c, r#"[data-test="dlq-apply"]"#).await;
    wait_count(c, r#"[data-test="dlq-row"]"#, 1).await;
    let row = find(c, r#"[data-test="dlq-row"]"#).await;
    let id = row.attr("data-id").await.unwrap().unwrap();
    let entry = bus.cli(&["XRANGE", &dlq, &id, &id]);
    assert!(entry.contains("a.two"), "{entry}");
    let source = entry
        .lines()
        .skip_while(|l| *l != "dlq_source_id")
        .nth(1)
        .unwrap()
        .to_string();

    // Detail shows every field and the error.
    click(c, &format!(r#"{} [data-test="dlq-open"]"#, dlq_row(&id))).await;
    wait_text(c, r#"[data-test="detail-error"]"#, "the error", |t| {
        t.contains("a.two refused by the test handler")
    })
    .await;
    let fields = text(c, r#"[data-test="detail-fields"]"#).await;
    for f in [
        "dlq_reason",
        "dlq_group",
        "dlq_attempts",
        "dlq_failed_at",
        "dlq_source_id",
    ] {
        assert!(fields.contains(f), "{f} missing from {fields}");
    }
    screenshot(c, "dashboard-dlq.png", "dlq").await;

    click(c, &format!(r#"{} [data-test="dlq-select"]"#, dlq_row(&id))).await;
    click(c, r#"[data-test="reprocess-selected"]"#).await;
    wait_count(c, &dlq_row(&id), 0).await;
    wait_for("the entry back on the stream", T, || async {
        bus.cli(&["XREVRANGE", &bus.stream, "+", "-", "COUNT", "1"])
            .contains(&source)
    })
    .await;
    assert_eq!(bus.len(&dlq), 2);

    // Everything matching a.one: a count first (dry run), then a confirmation.
    fill(c, r#"[data-test="dlq-type"]"#, "a.one").await;
    click(c, r#"[data-test="dlq-apply"]"#).await;
    wait_count(c, r#"[data-test="dlq-row"]"#, 2).await;
    click(c, r#"[data-test="reprocess-matching"]"#).await;
    wait_text(c, r#"[data-test="confirm-text"]"#, "the count", |t| {
        t.starts_with("2 dead letter(s) match")
    })
    .await;
    assert_eq!(bus.len(&dlq), 2, "a dry run moves nothing");
    click(c, r#"[data-test="confirm-yes"]"#).await;
    wait_for("the DLQ emptied", T, || async { bus.len(&dlq) == 0 }).await;
    wait_count(c, r#"[data-test="dlq-row"]"#, 0).await;
    wait_text(c, r#"[data-test="dlq-length"]"#, "the DLQ length", |t| {
        t == "0"
    })
    .await;
    browser.close().await;
    bus.stop().await;
}

#[tokio::test]
async fn a_replay_shows_progress_until_the_published_count() {
    let _one = BROWSER.lock().await;
    let bus = Bus::start("dash-replay").await;
    for i in 0..12 {
        bus.xadd(
            &bus.stream,
            &[("type", "r.x"), ("data", &format!("{{\"n\":{i}}}"))],
        );
    }
    bus.xadd(&bus.stream, &[("type", "r.other"), ("data", "{}")]);
    let browser = Browser::start().await;
    let c = &browser.client;
    sign_in(c, &bus, ADMIN).await;
    fill(c, r#"[data-test="replay-since"]"#, "-1h").await;
    fill(c, r#"[data-test="replay-types"]"#, "r.x, r.none").await;
    fill(c, r#"[data-test="replay-rate"]"#, "8").await;
    click(c, r#"[data-test="replay-start"]"#).await;
    let progress = r#"[data-test="replay-progress"]"#;
    wait_text(c, progress, "a running replay", |t| t.contains("published")).await;
    let done = wait_text(c, progress, "the replay done", |t| t.starts_with("done")).await;
    assert!(done.contains("published 12 of 12"), "{done}");
    let job = text(c, r#"[data-test="replay-id"]"#).await;
    let published = bus.cli(&["HGET", &format!("{}:replay:{job}", bus.stream), "published"]);
    assert_eq!(published, "12");
    assert_eq!(bus.len(&bus.stream), 25);
    screenshot(c, "dashboard-replay.png", "replay").await;
    browser.close().await;
    bus.stop().await;
}

/// Issue 22 item 10: a number field holding text that is not a whole number ("1,000",
/// "fast") is refused at the field, with a message naming the field and the value; nothing
/// is sent (before, `Number("1,000")` went out as `null`, which means "unlimited"). Fixed,
/// the same form starts a job with the numbers typed.
#[tokio::test]
async fn a_number_field_refuses_text_that_is_not_a_whole_number() {
    let _one = BROWSER.lock().await;
    let bus = Bus::start("dash-number").await;
    for i in 0..3 {
        bus.xadd(
            &bus.stream,
            &[("type", "r.x"), ("data", &format!("{{\"n\":{i}}}"))],
        );
    }
    let browser = Browser::start().await;
    let c = &browser.client;
    sign_in(c, &bus, ADMIN).await;
    let jobs = format!("{}:replay:*", bus.stream);
    fill(c, r#"[data-test="replay-since"]"#, "-1h").await;
    fill(c, r#"[data-test="replay-limit"]"#, "1,000").await;
    fill(c, r#"[data-test="replay-rate"]"#, "fast").await;
    click(c, r#"[data-test="replay-start"]"#).await;
    let limit = wait_text(
        c,
        r#"[data-test="replay-limit-error"]"#,
        "the limit refused",
        |t| !t.is_empty(),
    )
    .await;
    assert!(
        limit.contains("Limit") && limit.contains("\"1,000\"") && limit.contains("whole number"),
        "{limit}"
    );
    let rate = text(c, r#"[data-test="replay-rate-error"]"#).await;
    assert!(rate.contains("Rate") && rate.contains("\"fast\""), "{rate}");
    let invalid = js(
        c,
        "return document.querySelector('[data-test=\"replay-limit\"]').getAttribute('aria-invalid')",
    )
    .await;
    assert_eq!(invalid, json!("true"));
    // The check runs before any request; a started job would be on the page and in Redis.
    assert!(
        !find(c, r#"[data-test="replay-job"]"#)
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    assert_eq!(bus.cli(&["KEYS", &jobs]), "", "a replay job was created");

    // Whole numbers go through: one job, with the limit typed.
    fill(c, r#"[data-test="replay-limit"]"#, "2").await;
    fill(c, r#"[data-test="replay-rate"]"#, "100").await;
    click(c, r#"[data-test="replay-start"]"#).await;
    let done = wait_text(
        c,
        r#"[data-test="replay-progress"]"#,
        "the replay done",
        |t| t.starts_with("done"),
    )
    .await;
    assert!(done.contains("published 2 of 2"), "{done}");
    assert_eq!(text(c, r#"[data-test="replay-limit-error"]"#).await, "");
    let keys = bus.cli(&["KEYS", &jobs]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert_eq!(bus.cli(&["HGET", keys.trim(), "limit"]), "2");
    browser.close().await;
    bus.stop().await;
}

/// What the test handler answers for type `hostile`: markup that must stay text.
const HOSTILE_ERROR: &str = "<script>window.__pwned = 'script'; document.title = 'pwned'</script><img src=x onerror=\"window.__pwned='error'\">";

#[tokio::test]
async fn a_hostile_dead_letter_is_shown_as_text_and_runs_nothing() {
    let _one = BROWSER.lock().await;
    let bus = Bus::start("dash-xss").await;
    let data = r#"{"html":"<img src=x onerror=\"window.__pwned='data';document.title='pwned'\">","s":"<script>window.__pwned='data-script'</script>"}"#;
    bus.xadd(
        &bus.stream,
        &[
            ("type", "hostile"),
            ("data", data),
            ("note", "<b onmouseover=alert(1)>x</b>"),
        ],
    );
    let dlq = bus.dlq();
    wait_for("the hostile entry dead-lettered", T, || async {
        bus.len(&dlq) == 1
    })
    .await;
    let browser = Browser::start().await;
    let c = &browser.client;
    sign_in(c, &bus, ADMIN).await;
    let row = find(c, r#"[data-test="dlq-row"]"#).await;
    let id = row.attr("data-id").await.unwrap().unwrap();
    let error_cell = format!(r#"{} [data-test="dlq-error"]"#, dlq_row(&id));
    let shown = find(c, &error_cell)
        .await
        .prop("textContent")
        .await
        .unwrap();
    assert_eq!(shown.as_deref(), Some(HOSTILE_ERROR));
    click(c, &format!(r#"{} [data-test="dlq-open"]"#, dlq_row(&id))).await;
    wait_text(
        c,
        r#"[data-test="detail-error"]"#,
        "the literal error",
        |t| t == HOSTILE_ERROR,
    )
    .await;
    let data_text = text(c, r#"[data-test="detail-data"]"#).await;
    assert!(data_text.contains("<img src=x onerror="), "{data_text}");
    assert!(
        text(c, r#"[data-test="detail-fields"]"#)
            .await
            .contains("<b onmouseover=alert(1)>x</b>")
    );
    // Give any injected handler the chance to run, then look for its traces.
    wait_for("the events list loaded", T, || async {
        count(c, r#"[data-test="event-row"]"#).await == 1
    })
    .await;
    let traces = js(
        c,
        "return [typeof window.__pwned, document.title, \
         document.querySelectorAll('main img, main script, main b').length]",
    )
    .await;
    assert_eq!(traces, json!(["undefined", "weir dashboard", 0]));
    browser.close().await;
    bus.stop().await;
}

/// Issue 22 item 11: forgetting deletes for good, so the page asks first — for the selected
/// rows and from the detail panel — and deletes only the letter named, only after "yes".
#[tokio::test]
async fn forget_asks_for_confirmation_and_deletes_only_after_yes() {
    let _one = BROWSER.lock().await;
    let bus = Bus::start("dash-forget").await;
    for _ in 0..2 {
        bus.xadd(
            &bus.stream,
            &[("type", "a.one"), ("data", r#"{"fail":true}"#)],
        );
    }
    let dlq = bus.dlq();
    wait_for("two dead letters", T, || async { bus.len(&dlq) == 2 }).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    sign_in(c, &bus, ADMIN).await;
    wait_count(c, r#"[data-test="dlq-row"]"#, 2).await;
    let row = find(c, r#"[data-test="dlq-row"]"#).await;
    let id = row.attr("data-id").await.unwrap().unwrap();

    click(c, &format!(r#"{} [data-test="dlq-select"]"#, dlq_row(&id))).await;
    click(c, r#"[data-test="forget-selected"]"#).await;
    wait_text(c, r#"[data-test="confirm-text"]"#, "the question", |t| {
        t.starts_with("Forget 1 dead letter(s) for good") && t.contains(&id)
    })
    .await;
    assert_eq!(bus.len(&dlq), 2, "nothing forgotten before the answer");
    click(c, r#"[data-test="confirm-no"]"#).await;
    assert!(
        !find(c, r#"[data-test="confirm"]"#)
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    assert_eq!(bus.len(&dlq), 2, "cancel forgets nothing");

    click(c, r#"[data-test="forget-selected"]"#).await;
    wait_text(c, r#"[data-test="confirm-yes"]"#, "the yes button", |t| {
        t.contains("forget")
    })
    .await;
    click(c, r#"[data-test="confirm-yes"]"#).await;
    wait_for("the one letter forgotten", T, || async {
        bus.len(&dlq) == 1
    })
    .await;
    wait_count(c, &dlq_row(&id), 0).await;
    wait_count(c, r#"[data-test="dlq-row"]"#, 1).await;

    // From the detail panel too.
    click(c, r#"[data-test="dlq-open"]"#).await;
    click(c, r#"[data-test="detail-forget"]"#).await;
    wait_text(c, r#"[data-test="confirm-text"]"#, "the question", |t| {
        t.starts_with("Forget 1 dead letter(s) for good")
    })
    .await;
    assert_eq!(bus.len(&dlq), 1);
    click(c, r#"[data-test="confirm-yes"]"#).await;
    wait_for("the DLQ empty", T, || async { bus.len(&dlq) == 0 }).await;
    browser.close().await;
    bus.stop().await;
}

#[tokio::test]
async fn the_read_token_sees_everything_and_cannot_write() {
    let _one = BROWSER.lock().await;
    let bus = Bus::start("dash-read").await;
    bus.xadd(
        &bus.stream,
        &[("type", "a.one"), ("data", r#"{"fail":true}"#)],
    );
    let dlq = bus.dlq();
    wait_for("a dead letter", T, || async { bus.len(&dlq) == 1 }).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    sign_in(c, &bus, READ).await;
    wait_count(c, r#"[data-test="pool-row"]"#, 2).await;
    wait_count(c, r#"[data-test="dlq-row"]"#, 1).await;
    wait_text(c, r#"[data-test="access"]"#, "the read-only badge", |t| {
        t.contains("read-only")
    })
    .await;
    for control in [
        format!(r#"{} [data-test="pause"]"#, pool_row("a")),
        format!(r#"{} [data-test="resume"]"#, pool_row("a")),
        r#"[data-test="reprocess-selected"]"#.to_string(),
        r#"[data-test="forget-selected"]"#.to_string(),
        r#"[data-test="reprocess-matching"]"#.to_string(),
        r#"[data-test="replay-start"]"#.to_string(),
    ] {
        let e = find(c, &control).await;
        let usable = e.is_displayed().await.unwrap() && e.is_enabled().await.unwrap();
        assert!(!usable, "{control} is usable with the read token");
    }
    // A write sent by hand from the page, with the page's token: 403, and nothing paused.
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch('/api/v1/pools/a/pause', {method: 'POST', headers: \
               {Authorization: 'Bearer ' + sessionStorage.getItem('weir.token')}}) \
             .then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert_eq!(bus.cli(&["SCARD", &format!("{}:paused", bus.stream)]), "0");
    browser.close().await;
    bus.stop().await;
}

#[tokio::test]
async fn the_page_is_served_only_with_a_token_and_with_strict_headers() {
    let bus = Bus::start("dash-headers").await;
    // The script is native ES modules, each at its own path; a browser runs a module only
    // when it is served as JavaScript.
    let modules = [
        "app.js",
        "shared.js",
        "overview.js",
        "dlq.js",
        "replay.js",
        "events.js",
    ];
    let scripts = modules.map(|m| format!("/assets/{m}"));
    let paths = ["/", "/assets/app.css"]
        .into_iter()
        .chain(scripts.iter().map(String::as_str));
    for path in paths {
        let r = reqwest::get(format!("{}{path}", bus.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        if path.ends_with(".js") {
            let kind = h["content-type"].to_str().unwrap();
            assert!(kind.starts_with("text/javascript"), "{path}: {kind}");
        }
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    bus.stop().await;

    let server = RedisServer::start();
    let toml = format!(
        "[redis]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\n",
        server.url()
    );
    let running = run(Engine::new(config(&toml)).with_handler("p", Recorder::ok()));
    let r = reqwest::get(running.url("/").await).await.unwrap();
    assert_eq!(r.status(), 404, "no token: no dashboard");
    running.stop().await;
}
