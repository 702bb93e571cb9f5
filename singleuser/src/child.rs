//! The app behind the shim: what to run, where it listens, starting it and waiting for it.
//!
//! - Jupyter (`jupyter lab|server|notebook`) gets the server prefix as its base URL and no
//!   authentication of its own: it listens on a unix socket in a private 0700 directory, or
//!   on a loopback port with a random token that the shim adds to every forwarded request.
//!   It is told to trust the shim's requests (no XSRF or Host checks of its own: the shim has
//!   made them), and not to open a browser.
//! - Any other app runs from a [`Template`] with `{port}`, `{socket}`, `{base_url}` and
//!   `{token}` placeholders.
//!
//! The child runs in a process group of its own, so a signal sent to the shim's group reaches
//! it only once, through the shim, which passes signals on. If the shim dies without doing so
//! (SIGKILL), the kernel sends the child SIGTERM (`PR_SET_PDEATHSIG`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::cli::Transport;
use crate::signing::{encode_hex, random_urlsafe};

/// Which Jupyter app to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JupyterApp {
    /// `lab` when `jupyter-lab` is installed, else `server` (as `jupyterhub-singleuser`).
    Default,
    /// `jupyter lab`.
    Lab,
    /// `jupyter server`.
    Server,
    /// `jupyter notebook` (Notebook 7, itself a Jupyter Server app).
    Notebook,
}

impl JupyterApp {
    /// From `--app`.
    pub fn from_flag(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "lab" | "jupyterlab" | "jupyter-lab" => Some(Self::Lab),
            "server" | "jupyter-server" => Some(Self::Server),
            "notebook" | "jupyter-notebook" => Some(Self::Notebook),
            _ => None,
        }
    }

    /// From `$JUPYTERHUB_SINGLEUSER_APP`, whose values name Python classes or shortcuts.
    pub fn from_singleuser_app(name: &str) -> Option<Self> {
        match name.trim().replace('_', "-").as_str() {
            "jupyter-server" | "extension" | "jupyter-server.serverapp.ServerApp" => {
                Some(Self::Server)
            }
            "notebook" | "notebook.notebookapp.NotebookApp" | "notebook.app.JupyterNotebookApp" => {
                Some(Self::Notebook)
            }
            "jupyterlab"
            | "lab"
            | "jupyterlab.labapp.LabApp"
            | "jupyterlab.labhubapp.SingleUserLabApp" => Some(Self::Lab),
            _ => None,
        }
    }

    /// The `jupyter` subcommand; `lab_installed` decides [`Self::Default`].
    pub fn subcommand(self, lab_installed: bool) -> &'static str {
        match self {
            Self::Lab => "lab",
            Self::Server => "server",
            Self::Notebook => "notebook",
            Self::Default if lab_installed => "lab",
            Self::Default => "server",
        }
    }
}

/// What the app is.
#[derive(Debug, Clone)]
pub enum ChildSpec {
    /// A Jupyter Server app.
    Jupyter {
        /// The `jupyter` program.
        program: PathBuf,
        /// Which app.
        app: JupyterApp,
        /// Socket or loopback port.
        transport: Transport,
        /// Appended to the command line.
        extra_args: Vec<String>,
        /// `$JUPYTERHUB_ROOT_DIR` (`~` is expanded).
        root_dir: Option<String>,
        /// `$JUPYTERHUB_DEFAULT_URL`.
        default_url: Option<String>,
        /// `$JUPYTERHUB_DEBUG`.
        debug: bool,
        /// `$JUPYTERHUB_DISABLE_USER_CONFIG` (only warned about; see the reference).
        disable_user_config: bool,
    },
    /// Any web app.
    Command {
        /// The command line.
        template: Template,
    },
}

// === Template ===

/// A part of a command-line word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Port,
    Socket,
    BaseUrl,
    Token,
}

/// A command line with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<Vec<Piece>>,
}

/// A command template that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No program.
    #[error("the command is empty")]
    Empty,
    /// A quote never closed.
    #[error("unclosed quote in the command")]
    UnclosedQuote,
    /// `{name}` that is not a placeholder.
    #[error(
        "unknown placeholder {{{0}}} (known: {{port}}, {{socket}}, {{base_url}}, {{token}}; write {{{{ and }}}} for braces)"
    )]
    UnknownPlaceholder(String),
    /// A `{` or `}` that starts no placeholder.
    #[error("unmatched brace in {0:?} (write {{{{ and }}}} for literal braces)")]
    Brace(String),
    /// The app would not know where to listen.
    #[error(
        "the command must contain {{port}} or {{socket}} so the app listens where the shim expects it"
    )]
    NoListener,
    /// Both a port and a socket.
    #[error("the command may use {{port}} or {{socket}}, not both")]
    BothListeners,
}

/// Splits a command line into words as a POSIX shell would, without expansions: single
/// quotes keep everything, double quotes keep everything but `\"` and `\\`, a backslash
/// outside quotes escapes the next character.
fn split_words(line: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(TemplateError::UnclosedQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(TemplateError::UnclosedQuote),
                        },
                        Some(c) => word.push(c),
                        None => return Err(TemplateError::UnclosedQuote),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn parse_word(word: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = word;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| TemplateError::Brace(word.to_owned()))?;
            let piece = match &after[..end] {
                "port" => Piece::Port,
                "socket" => Piece::Socket,
                "base_url" => Piece::BaseUrl,
                "token" => Piece::Token,
                other => return Err(TemplateError::UnknownPlaceholder(other.to_owned())),
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = &after[end + 1..];
        } else {
            return Err(TemplateError::Brace(word.to_owned()));
        }
    }
    text.push_str(rest);
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Values the placeholders stand for.
#[derive(Debug, Clone)]
pub struct Values<'a> {
    /// `{port}`.
    pub port: Option<u16>,
    /// `{socket}`.
    pub socket: Option<&'a Path>,
    /// `{base_url}`.
    pub base_url: &'a str,
    /// `{token}`.
    pub token: Option<&'a str>,
}

impl Template {
    /// Parses `command` and appends `extra` arguments (one word each, placeholders allowed).
    ///
    /// # Errors
    /// When the command is empty, malformed, or names no place to listen.
    pub fn parse(command: &str, extra: &[String]) -> Result<Self, TemplateError> {
        let mut words = Vec::new();
        for w in split_words(command)?.iter().chain(extra) {
            words.push(parse_word(w)?);
        }
        if words.is_empty() {
            return Err(TemplateError::Empty);
        }
        let t = Self { words };
        match (t.uses(&Piece::Port), t.uses(&Piece::Socket)) {
            (false, false) => Err(TemplateError::NoListener),
            (true, true) => Err(TemplateError::BothListeners),
            _ => Ok(t),
        }
    }

    fn uses(&self, piece: &Piece) -> bool {
        self.words.iter().flatten().any(|p| p == piece)
    }

    /// Whether the app listens on `{socket}`.
    pub fn uses_socket(&self) -> bool {
        self.uses(&Piece::Socket)
    }

    /// Whether the app is given `{token}`.
    pub fn uses_token(&self) -> bool {
        self.uses(&Piece::Token)
    }

    /// The command line with the placeholders replaced.
    pub fn render(&self, values: &Values<'_>) -> Vec<String> {
        self.words
            .iter()
            .map(|pieces| {
                let mut w = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => w.push_str(t),
                        Piece::Port => w.push_str(&values.port.unwrap_or(0).to_string()),
                        Piece::Socket => {
                            w.push_str(
                                &values
                                    .socket
                                    .map(|s| s.display().to_string())
                                    .unwrap_or_default(),
                            );
                        }
                        Piece::BaseUrl => w.push_str(values.base_url),
                        Piece::Token => w.push_str(values.token.unwrap_or_default()),
                    }
                }
                w
            })
            .collect()
    }
}

// === Where the child listens ===

/// How to reach the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A unix socket.
    Unix(PathBuf),
}

/// The app's address and the token it expects, if any.
#[derive(Clone)]
pub struct Target {
    /// Where it listens.
    pub endpoint: Endpoint,
    /// Sent as `Authorization: token <token>` on every forwarded request.
    pub token: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A directory only the shim's user can enter, removed when dropped.
#[derive(Debug)]
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    /// Creates one under `$XDG_RUNTIME_DIR` (when set and usable) or the temporary directory.
    ///
    /// # Errors
    /// When no directory can be created.
    pub fn create(runtime_dir: Option<&Path>) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let mut bases: Vec<PathBuf> = runtime_dir.map(Path::to_path_buf).into_iter().collect();
        bases.push(std::env::temp_dir());
        bases.push(PathBuf::from("/tmp"));
        let mut last_error = None;
        for base in bases {
            let dir = base.join(format!("singleuser-auth-shim-{}", random_urlsafe(9)));
            // A unix socket path must fit in 108 bytes.
            if dir.as_os_str().len() > 80 {
                continue;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    // The umask can only have removed bits; make the mode exact anyway.
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                    return Ok(Self(dir));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no usable temporary directory")))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound and released at once; the app binds it next).
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    encode_hex(&bytes)
}

/// Whether `program` can be found on `path` (a `$PATH` value).
pub fn on_path(program: &str, path: Option<&str>) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.unwrap_or_default().split(':').any(|dir| {
        std::fs::metadata(Path::new(if dir.is_empty() { "." } else { dir }).join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn expand_home(path: &str, home: Option<&str>) -> String {
    match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{}{rest}", home.trim_end_matches('/'))
        }
        _ => path.to_owned(),
    }
}

/// A command line ready to run.
#[derive(Debug)]
pub struct Prepared {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables added to the app's environment.
    pub env: Vec<(String, String)>,
    /// Where it will listen.
    pub target: Target,
    /// Holds the socket, removed with it.
    pub dir: PrivateDir,
}

/// What [`prepare`] reads from the shim's environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostEnv<'a> {
    /// `$HOME`.
    pub home: Option<&'a str>,
    /// `$PATH`.
    pub path: Option<&'a str>,
    /// `$XDG_RUNTIME_DIR`.
    pub runtime_dir: Option<&'a str>,
    /// `$JUPYTER_CONFIG_PATH`.
    pub jupyter_config_path: Option<&'a str>,
}

/// What JupyterLab's hub menu (Control Panel, Log Out, Share) needs to know, put in its page
/// config as `jupyterhub-singleuser` does.
#[derive(Debug, Clone, Copy)]
pub struct HubInfo<'a> {
    /// Public origin of the hub (`$JUPYTERHUB_HOST`).
    pub hub_host: &'a str,
    /// The hub's prefix, e.g. `/hub/`.
    pub hub_prefix: &'a str,
    /// The server's owner.
    pub user: &'a str,
    /// The server's name.
    pub server_name: &'a str,
}

/// Writes `labconfig/page_config.json` with the hub's facts under `dir`, returning the new
/// `JUPYTER_CONFIG_PATH` (JupyterLab merges every `labconfig/page_config.json` on that path
/// into its page config; this one adds nothing else to Jupyter's configuration).
fn write_lab_page_config(
    dir: &Path,
    hub: &HubInfo<'_>,
    existing: Option<&str>,
) -> std::io::Result<String> {
    let config_dir = dir.join("config");
    std::fs::create_dir_all(config_dir.join("labconfig"))?;
    let page_config = serde_json::json!({
        "hubHost": hub.hub_host,
        "hubPrefix": hub.hub_prefix,
        // The visitor is only known per request; the owner is the usual one.
        "hubUser": hub.user,
        "hubServerUser": hub.user,
        "hubServerName": hub.server_name,
        "shareUrl": format!("{}user-redirect", hub.hub_prefix),
    });
    std::fs::write(
        config_dir.join("labconfig/page_config.json"),
        serde_json::to_vec_pretty(&page_config)?,
    )?;
    let mut path = config_dir.display().to_string();
    if let Some(existing) = existing.filter(|e| !e.is_empty()) {
        path.push(':');
        path.push_str(existing);
    }
    Ok(path)
}

/// Decides the command line and address of the app.
///
/// # Errors
/// When no private directory or free port can be had.
pub fn prepare(
    spec: &ChildSpec,
    prefix: &str,
    host: HostEnv<'_>,
    hub: &HubInfo<'_>,
) -> std::io::Result<Prepared> {
    let dir = PrivateDir::create(host.runtime_dir.map(Path::new))?;
    match spec {
        ChildSpec::Jupyter {
            program,
            app,
            transport,
            extra_args,
            root_dir,
            default_url,
            debug,
            disable_user_config: _,
        } => {
            let lab = matches!(app, JupyterApp::Default) && on_path("jupyter-lab", host.path);
            let mut argv = vec![
                program.display().to_string(),
                app.subcommand(lab).to_owned(),
                format!("--ServerApp.base_url={prefix}"),
                "--ServerApp.open_browser=False".to_owned(),
                // Requests arrive with the public Host; the shim has checked them.
                "--ServerApp.allow_remote_access=True".to_owned(),
                "--ServerApp.trust_xheaders=True".to_owned(),
                "--ServerApp.disable_check_xsrf=True".to_owned(),
                "--ServerApp.quit_button=False".to_owned(),
                "--ServerApp.port_retries=0".to_owned(),
                "--ServerApp.answer_yes=True".to_owned(),
                "--FileContentsManager.delete_to_trash=False".to_owned(),
            ];
            let target = if transport.is_socket() {
                let sock = dir.path().join("jupyter.sock");
                argv.push(format!("--ServerApp.sock={}", sock.display()));
                argv.push("--ServerApp.sock_mode=0600".to_owned());
                // Only the shim's user can reach the socket: no token needed.
                argv.push("--IdentityProvider.token=".to_owned());
                Target {
                    endpoint: Endpoint::Unix(sock),
                    token: None,
                }
            } else {
                let port = free_port()?;
                let token = random_token();
                argv.push("--ServerApp.ip=127.0.0.1".to_owned());
                argv.push(format!("--ServerApp.port={port}"));
                argv.push(format!("--IdentityProvider.token={token}"));
                Target {
                    endpoint: Endpoint::Tcp((Ipv4Addr::LOCALHOST, port).into()),
                    token: Some(token),
                }
            };
            if let Some(root) = root_dir {
                argv.push(format!(
                    "--ServerApp.root_dir={}",
                    expand_home(root, host.home)
                ));
            }
            if let Some(url) = default_url {
                argv.push(format!("--ServerApp.default_url={url}"));
            }
            if *debug {
                argv.push("--debug".to_owned());
            }
            argv.extend(extra_args.iter().cloned());
            let config_path = write_lab_page_config(dir.path(), hub, host.jupyter_config_path)?;
            Ok(Prepared {
                argv,
                env: vec![("JUPYTER_CONFIG_PATH".to_owned(), config_path)],
                target,
                dir,
            })
        }
        ChildSpec::Command { template } => {
            let token = template.uses_token().then(random_token);
            let (endpoint, port, socket) = if template.uses_socket() {
                let sock = dir.path().join("app.sock");
                (Endpoint::Unix(sock.clone()), None, Some(sock))
            } else {
                let port = free_port()?;
                (
                    Endpoint::Tcp((Ipv4Addr::LOCALHOST, port).into()),
                    Some(port),
                    None,
                )
            };
            let argv = template.render(&Values {
                port,
                socket: socket.as_deref(),
                base_url: prefix,
                token: token.as_deref(),
            });
            Ok(Prepared {
                argv,
                env: Vec::new(),
                target: Target { endpoint, token },
                dir,
            })
        }
    }
}

// === Running it ===

/// Starts the app in a process group of its own, stdin from `/dev/null`, stdout and stderr
/// shared with the shim. Call it from the thread that lives as long as the shim (the main
/// thread): the parent-death signal fires when the *thread* that forked exits.
///
/// # Errors
/// When the program cannot be started.
pub fn spawn(argv: &[String], env: &[(String, String)]) -> std::io::Result<tokio::process::Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    let parent = nix::unistd::getpid();
    #[allow(
        unsafe_code,
        reason = "pre_exec is the only way to set the parent-death signal of the child"
    )]
    // SAFETY: the closure runs in the forked child before exec and calls only `prctl` and
    // `getppid`, both async-signal-safe system calls; it allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)?;
            // The shim may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the shim exited"));
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Why the app never became reachable.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// It exited first.
    #[error("the app exited before accepting connections ({0})")]
    Exited(ExitStatus),
    /// The deadline passed.
    #[error("the app did not accept connections within {0:?}")]
    Timeout(Duration),
    /// Waiting on it failed.
    #[error("waiting for the app: {0}")]
    Wait(std::io::Error),
}

/// Whether a connection to `endpoint` succeeds now.
pub async fn reachable(endpoint: &Endpoint) -> bool {
    match endpoint {
        Endpoint::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
        Endpoint::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
    }
}

/// Waits until the app accepts connections, it exits, or `timeout` passes.
///
/// # Errors
/// See [`NotReady`].
pub async fn wait_ready(
    child: &mut tokio::process::Child,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<(), NotReady> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if reachable(endpoint).await {
            return Ok(());
        }
        if let Some(status) = child.try_wait().map_err(NotReady::Wait)? {
            return Err(NotReady::Exited(status));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(NotReady::Timeout(timeout));
        }
        tokio::select! {
            status = child.wait() => {
                return Err(status.map_or_else(NotReady::Wait, NotReady::Exited));
            }
            () = tokio::time::sleep(pause.min(deadline - now)) => {}
        }
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The exit code the shim passes on: the child's code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from((128 + sig) & 0xff).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: HubInfo<'static> = HubInfo {
        hub_host: "",
        hub_prefix: "/hub/",
        user: "alice",
        server_name: "",
    };

    #[test]
    fn shell_like_words() {
        assert_eq!(
            split_words(r#"app  --x 'a b' "c \"d\" \n" e\ f ''"#).unwrap(),
            ["app", "--x", "a b", r#"c "d" \n"#, "e f", ""]
        );
        assert_eq!(
            split_words("'open").unwrap_err(),
            TemplateError::UnclosedQuote
        );
        assert!(split_words("   ").unwrap().is_empty());
    }

    #[test]
    fn template_placeholders() {
        let t = Template::parse(
            "app --port={port} --prefix {base_url} --json '{{\"a\": 1}}'",
            &["--auth={token}".to_owned()],
        )
        .unwrap();
        assert!(!t.uses_socket());
        assert!(t.uses_token());
        let argv = t.render(&Values {
            port: Some(8123),
            socket: None,
            base_url: "/user/a b/",
            token: Some("T"),
        });
        assert_eq!(
            argv,
            [
                "app",
                "--port=8123",
                "--prefix",
                "/user/a b/",
                "--json",
                "{\"a\": 1}",
                "--auth=T"
            ]
        );
    }

    #[test]
    fn template_errors() {
        use TemplateError::*;
        for (cmd, err) in [
            ("", Empty),
            ("app", NoListener),
            ("app {port} {socket}", BothListeners),
            ("app {port} {nope}", UnknownPlaceholder("nope".into())),
            ("app {port} {open", Brace("{open".into())),
            ("app {port} close}", Brace("close}".into())),
        ] {
            assert_eq!(Template::parse(cmd, &[]).unwrap_err(), err, "{cmd}");
        }
    }

    #[test]
    fn app_names() {
        assert_eq!(JupyterApp::from_flag("Lab"), Some(JupyterApp::Lab));
        assert_eq!(
            JupyterApp::from_singleuser_app("jupyter_server.serverapp.ServerApp"),
            Some(JupyterApp::Server)
        );
        assert_eq!(
            JupyterApp::from_singleuser_app("extension"),
            Some(JupyterApp::Server)
        );
        assert_eq!(JupyterApp::from_singleuser_app("jupyverse"), None);
        assert_eq!(JupyterApp::Default.subcommand(true), "lab");
        assert_eq!(JupyterApp::Default.subcommand(false), "server");
    }

    #[test]
    fn jupyter_socket_command() {
        let spec = ChildSpec::Jupyter {
            program: "jupyter".into(),
            app: JupyterApp::Server,
            transport: Transport::Socket,
            extra_args: vec!["--allow-root".into()],
            root_dir: Some("~/work".into()),
            default_url: Some("/tree".into()),
            debug: true,
            disable_user_config: false,
        };
        let p = prepare(
            &spec,
            "/user/alice/",
            HostEnv {
                home: Some("/home/alice/"),
                jupyter_config_path: Some("/etc/extra"),
                ..HostEnv::default()
            },
            &HUB,
        )
        .unwrap();
        let (name, config_path) = &p.env[0];
        assert_eq!(name, "JUPYTER_CONFIG_PATH");
        let (mine, rest) = config_path.split_once(':').unwrap();
        assert_eq!(rest, "/etc/extra");
        let page: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(mine).join("labconfig/page_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(page["hubPrefix"], "/hub/");
        assert_eq!(page["hubServerUser"], "alice");
        assert_eq!(page["shareUrl"], "/hub/user-redirect");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(p.dir.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let Endpoint::Unix(sock) = &p.target.endpoint else {
            panic!("expected a socket")
        };
        assert!(sock.starts_with(p.dir.path()));
        assert!(p.target.token.is_none());
        assert_eq!(
            &p.argv[..3],
            ["jupyter", "server", "--ServerApp.base_url=/user/alice/"]
        );
        for expected in [
            format!("--ServerApp.sock={}", sock.display()),
            "--IdentityProvider.token=".to_owned(),
            "--ServerApp.root_dir=/home/alice/work".to_owned(),
            "--ServerApp.default_url=/tree".to_owned(),
            "--debug".to_owned(),
        ] {
            assert!(p.argv.contains(&expected), "{expected} in {:?}", p.argv);
        }
        assert_eq!(p.argv.last().unwrap(), "--allow-root");
        let dir = p.dir.path().to_path_buf();
        drop(p);
        assert!(!dir.exists());
    }

    #[test]
    fn jupyter_tcp_command_has_a_token() {
        let spec = ChildSpec::Jupyter {
            program: "jupyter".into(),
            app: JupyterApp::Lab,
            transport: Transport::Tcp,
            extra_args: vec![],
            root_dir: None,
            default_url: None,
            debug: false,
            disable_user_config: false,
        };
        let p = prepare(&spec, "/", HostEnv::default(), &HUB).unwrap();
        let Endpoint::Tcp(addr) = p.target.endpoint else {
            panic!("expected tcp")
        };
        assert!(addr.ip().is_loopback());
        let token = p.target.token.clone().unwrap();
        assert_eq!(token.len(), 64);
        assert!(
            p.argv
                .contains(&format!("--IdentityProvider.token={token}"))
        );
        assert!(
            p.argv
                .contains(&format!("--ServerApp.port={}", addr.port()))
        );
        assert!(!format!("{:?}", p.target).contains(&token));
    }

    #[test]
    fn exit_codes() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn home_expansion() {
        assert_eq!(expand_home("~", Some("/h")), "/h");
        assert_eq!(expand_home("~/x", Some("/h/")), "/h/x");
        assert_eq!(expand_home("~bob/x", Some("/h")), "~bob/x");
        assert_eq!(expand_home("/abs", Some("/h")), "/abs");
    }
}
