//! Page templates (Jinja syntax, rendered with minijinja): the built-in set compiled into the
//! binary, each file overridable by a file of the same name in one of `hub.template_paths`
//! (searched in order), without rebuilding. Templates are read once, on first use.
//!
//! Every template sees these globals: `base_url`, `prefix` (the hub prefix, e.g. `/hub/`),
//! `version`, `logo_url`, `static_url(path)`, `announcement` (`hub.announcement`),
//! `custom_css` (whether `hub.static_paths` holds a `custom.css`), and the entries of
//! `hub.template_vars` (which may replace any of them).
//! Values are HTML-escaped unless a template says otherwise.

use std::io::ErrorKind;
use std::path::PathBuf;

use minijinja::value::Value;
use minijinja::{Environment, Error, context};

use crate::config::HubConfig;

/// The built-in templates, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("page.html", include_str!("../../templates/page.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("spawn.html", include_str!("../../templates/spawn.html")),
    (
        "spawn_pending.html",
        include_str!("../../templates/spawn_pending.html"),
    ),
    (
        "not_running.html",
        include_str!("../../templates/not_running.html"),
    ),
    ("token.html", include_str!("../../templates/token.html")),
    ("oauth.html", include_str!("../../templates/oauth.html")),
    ("admin.html", include_str!("../../templates/admin.html")),
    (
        "accept_share.html",
        include_str!("../../templates/accept_share.html"),
    ),
];

/// The built-in static files (`/hub/static/<name>`), with their content types.
pub const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    ),
    (
        "hub.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/hub.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin.js"),
    ),
    (
        "logo.svg",
        "image/svg+xml",
        include_str!("../../static/logo.svg"),
    ),
];

/// A short tag that changes whenever the built-in static files do, appended to their URLs so
/// browsers may cache them for long.
fn static_version() -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for (name, _, body) in STATIC_FILES {
        digest.update(name.as_bytes());
        digest.update(body.as_bytes());
    }
    hex::encode(&digest.finalize()[..6])
}

/// `text` with the characters that matter in HTML text and quoted attributes escaped.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes values into HTML templates escaped like minijinja does, except that `/` stays as
/// it is (it needs no escaping, and paths and URLs stay readable in the page source).
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &mut minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    if *state.auto_escape() == minijinja::AutoEscape::Html
        && !value.is_safe()
        && !value.is_undefined()
        && !value.is_none()
        && value.as_str().is_some()
    {
        let text = value.as_str().unwrap_or_default();
        return std::fmt::Write::write_str(out, &html_escape(text)).map_err(|_| {
            Error::new(
                minijinja::ErrorKind::WriteFailure,
                "could not write a template value",
            )
        });
    }
    minijinja::escape_formatter(out, state, value)
}

/// The template environment.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

/// Whether a template name is a plain relative path that cannot leave a template directory.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && name
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn load(dirs: &[PathBuf], name: &str) -> Result<Option<String>, Error> {
    if !safe_name(name) {
        return Ok(None);
    }
    for dir in dirs {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(Some(text)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("cannot read template {}", path.display()),
                )
                .with_source(e));
            }
        }
    }
    Ok(BUILTIN
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, text)| (*text).to_owned()))
}

impl Templates {
    /// The environment for `config`.
    pub fn new(config: &HubConfig) -> Self {
        let mut env = Environment::new();
        env.set_formatter(html_formatter);
        let dirs = config.hub.template_paths.clone();
        env.set_loader(move |name| load(&dirs, name));
        let prefix = config.hub.hub_prefix();
        let static_prefix = format!("{prefix}static/");
        let version = static_version();
        env.add_function("static_url", move |path: &str| {
            format!("{static_prefix}{path}?v={version}")
        });
        env.add_global("base_url", config.hub.base_url.to_string());
        env.add_global("prefix", prefix.clone());
        env.add_global("version", crate::VERSION);
        env.add_global("logo_url", format!("{prefix}logo"));
        env.add_global("announcement", config.hub.announcement.clone());
        // An operator's `custom.css` (in `hub.static_paths` when the hub starts) is linked by
        // every page.
        let custom_css = config
            .hub
            .static_paths
            .iter()
            .any(|dir| dir.join("custom.css").is_file());
        env.add_global("custom_css", custom_css);
        for (key, value) in &config.hub.template_vars {
            env.add_global(key.clone(), value.clone());
        }
        Self { env }
    }

    /// Renders template `name` with `ctx`.
    ///
    /// # Errors
    /// When the template is missing, unreadable or fails to render.
    pub fn render(&self, name: &str, ctx: Value) -> Result<String, Error> {
        self.env.get_template(name)?.render(ctx)
    }

    /// Renders `name`, or on failure a minimal page that says so (the failure is logged: it is
    /// an operator's template error, not the visitor's).
    pub fn render_or_fallback(&self, name: &str, ctx: Value) -> String {
        match self.render(name, ctx) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!("template {name}: {e:#}");
                let fallback = self.render(
                    "error.html",
                    context! { status_code => 500, status_message => "Internal Server Error",
                    message => "This page could not be rendered; the hub's log says why." },
                );
                fallback.unwrap_or_else(|_| {
                    "<!DOCTYPE html><title>500</title><p>This page could not be rendered.</p>"
                        .to_owned()
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_cannot_escape_their_directory() {
        assert!(safe_name("login.html"));
        assert!(safe_name("parts/nav.html"));
        for bad in [
            "",
            "/etc/passwd",
            "../x.html",
            "a/../../x",
            "a//b",
            "a\\..\\b",
            "./x",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
    }

    #[test]
    fn operator_files_override_builtins_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("login.html"), "custom {{ 1 + 1 }}").unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        assert_eq!(
            load(&dirs, "login.html").unwrap().unwrap(),
            "custom {{ 1 + 1 }}"
        );
        assert!(load(&dirs, "page.html").unwrap().unwrap().contains("<html"));
        assert!(load(&dirs, "nothing.html").unwrap().is_none());
    }

    #[test]
    fn every_builtin_template_compiles() {
        let config = HubConfig::default();
        let templates = Templates::new(&config);
        for (name, _) in BUILTIN {
            templates.env.get_template(name).unwrap();
        }
    }

    #[test]
    fn values_are_escaped() {
        let config = HubConfig::default();
        let templates = Templates::new(&config);
        let html = templates
            .render(
                "error.html",
                context! { status_code => 400, status_message => "Bad Request",
                message => "'\"><img src=x onerror=alert(1)>" },
            )
            .unwrap();
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("&#x27;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        let html = templates
            .render(
                "login.html",
                context! { login_url => "/hub/login?next=%2Fa&b=\"'", username => "<b>" },
            )
            .unwrap();
        assert!(
            html.contains("action=\"/hub/login?next=%2Fa&amp;b=&quot;&#x27;\""),
            "{html}"
        );
        assert!(html.contains("value=\"&lt;b&gt;\""));
    }
}
