//! Browser tests' harness: headless Chromium driven over the W3C WebDriver protocol
//! (`chromedriver`, Debian's `chromium` and `chromium-driver`), a hub with a real `chp-proxy`
//! in front of it, and screenshots under `<target>/screenshots/<test>/`.
//!
//! The WebDriver client is the few commands the tests need, over `reqwest`.
//!
//! Without `chromium` or `chromedriver` the tests are skipped with a message, except under
//! `CI=true`, where they fail.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C key of an element reference in WebDriver replies.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long lookups and waits try before failing.
pub const WAIT: Duration = Duration::from_secs(15);

/// Key codes for [`Element::send_keys`].
pub mod keys {
    /// Tab.
    pub const TAB: &str = "\u{E004}";
    /// Enter.
    pub const ENTER: &str = "\u{E007}";
    /// Shift (held until the end of the keys).
    pub const SHIFT: &str = "\u{E008}";
    /// Arrow down.
    pub const DOWN: &str = "\u{E015}";
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The target directory (`CARGO_TARGET_DIR`, else the one the test binary was built in).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/<binary>
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// A running `chromedriver`, killed when dropped.
#[derive(Debug)]
pub struct Driver {
    _child: tokio::process::Child,
    url: String,
    chromium: PathBuf,
    client: reqwest::Client,
    /// Screenshots taken by this driver's sessions, numbered in order across them.
    shot: std::sync::Arc<AtomicUsize>,
    /// Screenshot directories emptied already (each once, by its test's first session).
    cleaned: std::sync::Mutex<Vec<String>>,
}

impl Driver {
    /// Starts `chromedriver` on a free port. `None` (after saying why) when Chromium or its
    /// driver is not installed and this is not CI.
    ///
    /// # Panics
    /// Under `CI=true` when either is missing, or when the driver does not come up.
    pub async fn start() -> Option<Driver> {
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let driver = find_program(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let message = "browser test skipped: chromium and chromedriver are not installed \
                           (Debian: apt-get install chromium chromium-driver, or scripts/test-deps.sh)";
            assert!(!in_ci(), "{message}; CI=true requires them");
            eprintln!("{message}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = tokio::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if let Some(resp) = ready {
                let status: Value = resp.json().await.unwrap_or(Value::Null);
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Driver {
            _child: child,
            url,
            chromium,
            client,
            shot: std::sync::Arc::new(AtomicUsize::new(0)),
            cleaned: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A new browser (its own profile: no cookies shared with other sessions) for test `test`,
    /// with a window of `width`×`height`.
    pub async fn session(&self, test: &str, width: u32, height: u32) -> Session {
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": self.chromium.to_string_lossy(),
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-extensions",
                            "--no-first-run",
                            "--no-default-browser-check",
                            "--password-store=basic",
                            "--lang=en-US",
                            "--force-device-scale-factor=1",
                            format!("--window-size={width},{height}"),
                        ],
                    },
                    "unhandledPromptBehavior": "accept",
                }
            }
        });
        let reply = self
            .client
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .expect("new session");
        let status = reply.status();
        let body: Value = reply.json().await.expect("session reply");
        assert!(status.is_success(), "new session: {body}");
        let id = body["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        let shots = target_dir().join("screenshots").join(test);
        {
            let mut cleaned = self
                .cleaned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !cleaned.iter().any(|t| t == test) {
                // Screenshots of an earlier run would mix with this run's.
                let _ = std::fs::remove_dir_all(&shots);
                cleaned.push(test.to_owned());
            }
        }
        std::fs::create_dir_all(&shots).expect("screenshot directory");
        let session = Session {
            client: self.client.clone(),
            url: format!("{}/session/{id}", self.url),
            shots,
            shot: std::sync::Arc::clone(&self.shot),
        };
        // Window size again: --window-size is not always honoured by headless Chromium.
        session.set_window_size(width, height).await;
        session
    }
}

/// A WebDriver error reply.
#[derive(Debug, Clone)]
pub struct WdError {
    /// The WebDriver error code (`no such element`, …).
    pub error: String,
    /// Its message.
    pub message: String,
}

/// One browser.
#[derive(Debug, Clone)]
pub struct Session {
    client: reqwest::Client,
    url: String,
    shots: PathBuf,
    shot: std::sync::Arc<AtomicUsize>,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element {
    session: Session,
    id: String,
    /// The selector it was found with (for messages).
    pub selector: String,
}

impl Session {
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        // POST commands need a JSON body, even an empty one.
        req = req.json(&body.unwrap_or_else(|| json!({})));
        let resp = req.send().await.map_err(|e| WdError {
            error: "transport".into(),
            message: e.to_string(),
        })?;
        let ok = resp.status().is_success();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if ok {
            Ok(value["value"].clone())
        } else {
            Err(WdError {
                error: value["value"]["error"].as_str().unwrap_or("?").to_owned(),
                message: value["value"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            })
        }
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        value["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {}: {}", e.error, e.message))
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The current URL.
    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.get("/title")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Sets the window's size.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await;
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The element matching `css` now, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let value = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .ok()?;
        Some(Element {
            session: self.clone(),
            id: value[ELEMENT_KEY].as_str()?.to_owned(),
            selector: css.to_owned(),
        })
    }

    /// Every element matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let value = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v[ELEMENT_KEY].as_str())
                    .map(|id| Element {
                        session: self.clone(),
                        id: id.to_owned(),
                        selector: css.to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The element matching `css`, waiting up to [`WAIT`] for it to appear and be displayed.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.try_find(css).await
                && element.is_displayed().await
            {
                return element;
            }
            if Instant::now() >= deadline {
                self.screenshot(&format!("missing-{}", sanitize(css))).await;
                panic!(
                    "no visible element {css} at {} after {WAIT:?}",
                    self.current_url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `check` (a JavaScript expression) is true.
    pub async fn wait_until(&self, what: &str, check: &str) {
        let deadline = Instant::now() + WAIT;
        let script = format!("return Boolean({check});");
        loop {
            if self.execute(&script, vec![]).await == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                self.screenshot(&format!("timeout-{}", sanitize(what)))
                    .await;
                panic!(
                    "waited {WAIT:?} for {what} at {}; page text: {:.2000}",
                    self.current_url().await,
                    self.body_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the URL's path (and query) starts with `prefix`.
    pub async fn wait_for_path(&self, prefix: &str) {
        let check = format!(
            "(location.pathname + location.search).startsWith({})",
            json!(prefix)
        );
        self.wait_until(&format!("the page {prefix}"), &check).await;
    }

    /// Waits until the text of the element matching `css` contains `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str) {
        let check = format!(
            "(function () {{ var e = document.querySelector({}); return e && e.textContent.indexOf({}) !== -1; }})()",
            json!(css),
            json!(text)
        );
        self.wait_until(&format!("{css} to say {text}"), &check)
            .await;
    }

    /// The visible text of the page.
    pub async fn body_text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : '';",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.get("/source")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a screenshot of the viewport as `<NN>-<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let n = self.shot.fetch_add(1, Ordering::SeqCst) + 1;
        let path = self.shots.join(format!("{n:02}-{}.png", sanitize(name)));
        let data = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(bytes.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }

    /// The element that has the keyboard focus.
    pub async fn active(&self) -> Element {
        let value = self.get("/element/active").await;
        Element {
            session: self.clone(),
            id: value[ELEMENT_KEY].as_str().unwrap_or_default().to_owned(),
            selector: "(active)".to_owned(),
        }
    }

    /// Types `keys` wherever the focus is (key actions, like a person at the keyboard).
    pub async fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for c in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// Makes `window.confirm` answer yes without showing a dialog (for the current page).
    pub async fn auto_confirm(&self) {
        self.execute("window.confirm = function () { return true; };", vec![])
            .await;
    }

    /// Ends the browser.
    pub async fn quit(self) {
        let _ = self.client.delete(&self.url).send().await;
    }
}

impl Element {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    /// Clicks it (scrolled into view first).
    pub async fn click(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .session
                .command(reqwest::Method::POST, &self.path("/click"), None)
                .await
            {
                Ok(_) => return,
                // Still being laid out, or covered for a moment.
                Err(e)
                    if Instant::now() < deadline
                        && (e.error == "element not interactable"
                            || e.error == "element click intercepted") =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("click {}: {}: {}", self.selector, e.error, e.message),
            }
        }
    }

    /// Types `text` into it.
    pub async fn send_keys(&self, text: &str) {
        self.session
            .post(&self.path("/value"), json!({ "text": text }))
            .await;
    }

    /// Empties a text field.
    pub async fn clear(&self) {
        self.session.post(&self.path("/clear"), json!({})).await;
    }

    /// Its rendered text.
    pub async fn text(&self) -> String {
        self.session
            .get(&self.path("/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A DOM property (`value`, `checked`, `id`, …).
    pub async fn property(&self, name: &str) -> Value {
        self.session
            .get(&self.path(&format!("/property/{name}")))
            .await
    }

    /// An HTML attribute.
    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.session
            .get(&self.path(&format!("/attribute/{name}")))
            .await
            .as_str()
            .map(str::to_owned)
    }

    /// Whether it is shown.
    pub async fn is_displayed(&self) -> bool {
        self.session.get(&self.path("/displayed")).await == Value::Bool(true)
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect()
}

/// The accessibility checks every page gets, in the page itself: each form control has a
/// label; each image has alternative text; text has a contrast of at least 4.5:1 (3:1 when
/// large) against its background; nothing is wider than the window; buttons and links have a
/// name. Returns the problems found.
pub const A11Y_CHECK: &str = r#"
var problems = [];
function visible(el) {
  var s = getComputedStyle(el);
  if (s.display === 'none' || s.visibility === 'hidden') { return false; }
  var r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
}
function describe(el) {
  return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '');
}
function name(el) {
  if (el.getAttribute('aria-label')) { return el.getAttribute('aria-label'); }
  var by = el.getAttribute('aria-labelledby');
  if (by) { return by.split(' ').map(function (id) { var t = document.getElementById(id); return t ? t.textContent : ''; }).join(' ').trim(); }
  if (el.labels && el.labels.length) { return Array.prototype.map.call(el.labels, function (l) { return l.textContent; }).join(' ').trim(); }
  if (el.title) { return el.title; }
  return '';
}
document.querySelectorAll('input, select, textarea').forEach(function (el) {
  if (el.type === 'hidden' || !visible(el)) { return; }
  if (!name(el)) { problems.push('no label: ' + describe(el)); }
});
document.querySelectorAll('button, a[href]').forEach(function (el) {
  if (!visible(el)) { return; }
  var text = (el.textContent || '').trim() || name(el);
  if (!text && !el.querySelector('img[alt]:not([alt=""])')) { problems.push('no name: ' + describe(el)); }
});
document.querySelectorAll('img').forEach(function (el) {
  if (!el.hasAttribute('alt')) { problems.push('no alt: ' + describe(el)); }
});
function rgb(c) {
  var m = c.match(/rgba?\(([^)]+)\)/);
  if (!m) { return null; }
  var p = m[1].split(',').map(function (x) { return parseFloat(x); });
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
}
function lum(c) {
  function ch(v) { v = v / 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }
  return 0.2126 * ch(c.r) + 0.7152 * ch(c.g) + 0.0722 * ch(c.b);
}
function background(el) {
  for (var e = el; e; e = e.parentElement) {
    var c = rgb(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0.5) { return c; }
  }
  return { r: 255, g: 255, b: 255, a: 1 };
}
var seen = 0;
document.querySelectorAll('body *').forEach(function (el) {
  if (!visible(el)) { return; }
  var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
  if (!own) { return; }
  if (el.closest('button:disabled, [aria-disabled=true]')) { return; }
  seen++;
  var s = getComputedStyle(el);
  var fg = rgb(s.color), bg = background(el);
  if (!fg) { return; }
  var l1 = lum(fg), l2 = lum(bg);
  var ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  var size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight, 10) >= 700;
  var large = size >= 24 || (bold && size >= 18.66);
  if (ratio < (large ? 3 : 4.5)) {
    problems.push('contrast ' + ratio.toFixed(2) + ': ' + describe(el) + ' "' + el.textContent.trim().slice(0, 40) + '"');
  }
});
if (document.documentElement.scrollWidth > window.innerWidth + 1) {
  var wide = [];
  document.querySelectorAll('body *').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.right > window.innerWidth + 1 && !el.closest('.table-wrap')) {
      wide.push(describe(el) + ' (' + Math.round(r.left) + '–' + Math.round(r.right) + ')');
    }
  });
  problems.push('wider than the window: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth + ': ' + wide.slice(0, 5).join(', '));
}
if (!document.documentElement.lang) { problems.push('no lang on <html>'); }
if (!document.title) { problems.push('no title'); }
if (!document.querySelector('h1')) { problems.push('no h1'); }
return { problems: problems, texts: seen };
"#;

/// Runs [`A11Y_CHECK`] on the current page and fails with every problem found.
pub async fn assert_accessible(session: &Session, page: &str) {
    let result = session.execute(A11Y_CHECK, vec![]).await;
    let problems: Vec<String> = result["problems"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        result["texts"].as_u64().unwrap_or(0) > 0,
        "{page}: the check saw no text"
    );
    assert!(problems.is_empty(), "{page}: {problems:#?}");
}
