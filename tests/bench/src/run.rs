//! `proxy-bench run`: starts the backends, then measures each subject
//! (direct, CHP, chp-proxy) in turn, and prints the report.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::ValueEnum;
use hyper::{Method, StatusCode};

use crate::api::Client;
use crate::procs::{self, Proc, Snapshot, Spec};
use crate::report::{Adds, Figures, Http, Listing, Machine, Report, Settings};
use crate::{nginx, wrk, ws};

/// Which setups to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Subject {
    /// wrk and the websocket client straight to the backends.
    Direct,
    /// configurable-http-proxy (Node.js).
    Chp,
    /// Our chp-proxy.
    Ours,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Seconds of each measured wrk run and of the websocket run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of unrecorded load before each measured run (0 for none).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// wrk connections (wrk runs one thread).
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Concurrent websocket connections, each doing sequential round trips.
    #[arg(long, default_value_t = 64)]
    pub ws_connections: u32,
    /// Size of the "many routes" table.
    #[arg(long, default_value_t = 10_000)]
    pub routes: u32,
    /// Size of the "huge" table, measured for chp-proxy only unless
    /// --chp-big-routes is given; 0 skips it.
    #[arg(long, default_value_t = 100_000)]
    pub big_routes: u32,
    /// Also fill CHP up to --big-routes.
    #[arg(long)]
    pub chp_big_routes: bool,
    /// How many times the full route listing is fetched (the median is shown).
    #[arg(long, default_value_t = 5)]
    pub list_repeats: u32,
    /// Subjects to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "direct,chp,ours")]
    pub only: Vec<Subject>,
    /// The Node.js binary that runs CHP.
    #[arg(long, default_value = "node")]
    pub node: PathBuf,
    /// CHP's entry script. Default:
    /// ${JHRS_CACHE:-$HOME/.cache/jupyterhub-rs}/node/node_modules/.bin/configurable-http-proxy
    #[arg(long)]
    pub chp: Option<PathBuf>,
    /// The chp-proxy binary. Default: `chp-proxy` next to this program.
    #[arg(long)]
    pub chp_proxy: Option<PathBuf>,
    /// Extra argument for both proxies (repeatable), e.g. --proxy-arg=--log-level=warn
    #[arg(long, allow_hyphen_values = true)]
    pub proxy_arg: Vec<String>,
    /// The nginx binary (the HTTP backend).
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
    /// The wrk binary (the HTTP load generator).
    #[arg(long, default_value = "wrk")]
    pub wrk: PathBuf,
    /// Core for the proxy and the backends.
    #[arg(long, default_value_t = 0)]
    pub server_core: u32,
    /// Core for wrk, the websocket client and this program.
    #[arg(long, default_value_t = 1)]
    pub load_core: u32,
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Before each measured run, wait up to this many seconds for the machine
    /// to be idle (other processes below 5% of a core); 0 does not wait.
    #[arg(long, default_value_t = 0)]
    pub wait_idle: u64,
    /// How many times a measured run disturbed by other processes (more
    /// than 5% of a core) is repeated before it is kept and flagged.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Exit with status 1 when a target is missed.
    #[arg(long)]
    pub fail_on_miss: bool,
    /// Keep the temporary directory with configs and process logs.
    #[arg(long)]
    pub keep_logs: bool,
}

/// The API token the proxies are started with.
const TOKEN: &str = "proxy-bench-token";

/// Websocket requests go to this path, under the proxies' `/ws` route.
const WS_PATH: &str = "/ws/echo";

/// Loopback address with a port.
fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Key of the i-th benchmark route.
fn route_key(i: u32) -> String {
    format!("/user/u{i:06}")
}

/// What stays the same across subjects.
#[derive(Debug)]
struct Ctx<'a> {
    args: &'a RunArgs,
    ticks_per_sec: u64,
    dir: &'a Path,
    nginx_port: u16,
    ws_port: u16,
    body: String,
    /// Index of the route every HTTP request goes to.
    target_index: u32,
    /// nginx and the websocket echo server.
    backends: [&'a Proc; 2],
}

impl Ctx<'_> {
    /// The path wrk requests: under the target route, a few segments deep.
    fn request_path(&self) -> String {
        format!("{}/api/status", route_key(self.target_index))
    }
}

pub fn main(args: RunArgs) -> Result<()> {
    // Before the runtime exists, so that every thread it creates inherits it.
    procs::pin_current_process(args.load_core)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let all_met = runtime.block_on(Box::pin(run(&args)))?;
    if args.fail_on_miss && !all_met {
        bail!("at least one target was missed or not measured");
    }
    Ok(())
}

async fn run(args: &RunArgs) -> Result<bool> {
    if args.routes == 0 || args.duration == 0 || args.connections == 0 {
        bail!("--routes, --duration and --connections must be at least 1");
    }
    let chp_script = match &args.chp {
        Some(path) => path.clone(),
        None => default_chp_script()?,
    };
    let ours_bin = match &args.chp_proxy {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locating this program")?
            .with_file_name("chp-proxy"),
    };
    let tmp = tempfile::Builder::new()
        .prefix("proxy-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let machine = Machine::probe(args, &chp_script, &ours_bin);
    eprintln!("proxy-bench: logs and configs in {}", tmp.path().display());

    let nginx_port = procs::free_port()?;
    let mut nginx = Proc::spawn_pinned(
        nginx::spec(&args.nginx, tmp.path(), nginx_port)?,
        args.server_core,
        &tmp.path().join("nginx.log"),
    )?;
    nginx
        .wait_listening(&[local(nginx_port)], Duration::from_secs(10))
        .await?;
    let ws_port = procs::free_port()?;
    let mut echo = Proc::spawn_pinned(
        Spec {
            name: "ws-echo-server",
            program: std::env::current_exe()
                .context("locating this program")?
                .into_os_string(),
            args: vec![
                OsString::from("ws-echo-server"),
                OsString::from("--port"),
                OsString::from(ws_port.to_string()),
            ],
            env: Vec::new(),
        },
        args.server_core,
        &tmp.path().join("ws-echo-server.log"),
    )?;
    echo.wait_listening(&[local(ws_port)], Duration::from_secs(10))
        .await?;

    let load_average = procs::load_average();
    if let Some(load) = load_average.filter(|&l| l > 0.5) {
        eprintln!(
            "proxy-bench: warning: the 1-minute load average is {load:.2}; other work on this \
             machine disturbs the figures"
        );
    }
    let ctx = Ctx {
        args,
        ticks_per_sec: procs::clock_ticks_per_sec()?,
        dir: tmp.path(),
        nginx_port,
        ws_port,
        body: nginx::body(),
        target_index: args.routes / 2,
        backends: [&nginx, &echo],
    };
    let request_path = ctx.request_path();
    let (mut direct, chp, ours) =
        Box::pin(measure_subjects(&ctx, &machine, chp_script, ours_bin)).await;
    // Logs stay readable if a backend died; say so.
    for (name, proc) in [("nginx", &mut nginx), ("ws-echo-server", &mut echo)] {
        if let Err(e) = proc.ensure_running() {
            direct
                .notes
                .push(format!("{name} died during the run: {e:#}"));
        }
    }
    echo.stop().await?;
    nginx.stop().await?;

    let report = Report {
        machine,
        settings: Settings {
            duration_s: args.duration,
            warmup_s: args.warmup,
            connections: args.connections,
            ws_connections: args.ws_connections,
            routes: args.routes,
            big_routes: args.big_routes,
            server_core: args.server_core,
            load_core: args.load_core,
            body_bytes: nginx::BODY_LEN,
            request_path,
            load_average,
        },
        direct,
        chp,
        ours,
    };
    let all_met = report.print();
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report.to_json()).context("encoding JSON")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("proxy-bench: figures written to {}", path.display());
    }
    if args.keep_logs {
        let kept = tmp.keep();
        eprintln!("proxy-bench: kept {}", kept.display());
    }
    Ok(all_met)
}

/// Measures each selected subject in turn. A subject that fails keeps the
/// figures it got so far, plus a note saying where it stopped.
async fn measure_subjects(
    ctx: &Ctx<'_>,
    machine: &Machine,
    chp_script: PathBuf,
    ours_bin: PathBuf,
) -> (Figures, Figures, Figures) {
    let args = ctx.args;
    let mut direct = Figures::new("direct", args.only.contains(&Subject::Direct));
    if direct.selected {
        eprintln!("== direct to the backends");
        if let Err(e) = bench_direct(ctx, &mut direct).await {
            direct.notes.push(format!("stopped early: {e:#}"));
        }
    }
    let mut chp = Figures::new("CHP", args.only.contains(&Subject::Chp));
    chp.version = machine.chp_version.clone();
    if chp.selected {
        eprintln!("== configurable-http-proxy");
        let program = args.node.clone().into_os_string();
        let mut proxy_args = vec![chp_script.into_os_string()];
        proxy_args.extend(proxy_flags(args));
        if let Err(e) = bench_proxy(ctx, Subject::Chp, program, proxy_args, &mut chp).await {
            chp.notes.push(format!("stopped early: {e:#}"));
        }
    }
    let mut ours = Figures::new("chp-proxy", args.only.contains(&Subject::Ours));
    ours.version = machine.ours_version.clone();
    if ours.selected {
        eprintln!("== chp-proxy");
        let program = ours_bin.into_os_string();
        let proxy_args = proxy_flags(args);
        if let Err(e) = bench_proxy(ctx, Subject::Ours, program, proxy_args, &mut ours).await {
            ours.notes.push(format!("stopped early: {e:#}"));
        }
    }
    (direct, chp, ours)
}

/// Above this share of one core used by other processes during a measured
/// run, the run is flagged as disturbed.
const OTHER_LOAD_WARN: f64 = 0.05;

/// Decides whether a measured run must be repeated because other processes
/// used the CPUs during it (`usage` over `secs` seconds). After the last
/// attempt the run is kept and flagged in the notes.
fn disturbed(
    ctx: &Ctx<'_>,
    figs: &mut Figures,
    what: &str,
    usage: &procs::Usage,
    secs: f64,
    attempt: u32,
) -> bool {
    let fraction = usage.other as f64 / ctx.ticks_per_sec as f64 / secs;
    if fraction > OTHER_LOAD_WARN && attempt < ctx.args.retries {
        eprintln!(
            "     disturbed: other processes used {:.0}% of a core; measuring again",
            fraction * 100.0
        );
        return true;
    }
    figs.max_other_load = figs.max_other_load.max(fraction);
    if fraction > OTHER_LOAD_WARN {
        figs.notes.push(format!(
            "other processes used {:.0}% of a core during {what}: those figures are disturbed",
            fraction * 100.0
        ));
    }
    false
}

/// Watches a phase that is not repeated when disturbed (route adds and
/// listings): other processes' CPU use during it is only noted, and only for
/// phases of a second or more.
#[derive(Debug)]
struct Watch {
    before: Snapshot,
    started: Instant,
}

impl Watch {
    fn start(ctx: &Ctx<'_>, target: &Proc) -> Result<Self> {
        Ok(Self {
            before: Snapshot::take(target, &ctx.backends)?,
            started: Instant::now(),
        })
    }

    fn finish(self, ctx: &Ctx<'_>, target: &Proc, figs: &mut Figures, what: &str) -> Result<()> {
        let usage = self.before.until(&Snapshot::take(target, &ctx.backends)?);
        let secs = self.started.elapsed().as_secs_f64();
        // CPU times come in clock ticks (10 ms): too coarse for a short phase.
        if secs >= 1.0 {
            disturbed(ctx, figs, what, &usage, secs, u32::MAX);
        }
        Ok(())
    }
}

/// Waits until the machine is idle between runs, for at most --wait-idle
/// seconds. Nothing of the benchmark's runs at this point, so any CPU use is
/// someone else's.
async fn wait_idle(ctx: &Ctx<'_>) -> Result<()> {
    let limit = Duration::from_secs(ctx.args.wait_idle);
    if limit.is_zero() {
        return Ok(());
    }
    let started = Instant::now();
    let window = Duration::from_millis(500);
    let mut told = false;
    loop {
        let before = procs::machine_busy_ticks()?;
        tokio::time::sleep(window).await;
        let busy = procs::machine_busy_ticks()?.saturating_sub(before) as f64
            / ctx.ticks_per_sec as f64
            / window.as_secs_f64();
        if busy <= OTHER_LOAD_WARN {
            return Ok(());
        }
        if started.elapsed() >= limit {
            eprintln!("     still busy after {limit:?}: measuring anyway");
            return Ok(());
        }
        if !told {
            eprintln!(
                "     waiting for the machine to be idle ({:.0}% of a core in use)",
                busy * 100.0
            );
            told = true;
        }
    }
}

fn default_chp_script() -> Result<PathBuf> {
    let cache = match std::env::var_os("JHRS_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/jupyterhub-rs"),
    };
    Ok(cache.join("node/node_modules/.bin/configurable-http-proxy"))
}

/// The --proxy-arg values; bench_proxy adds the addresses and ports.
fn proxy_flags(args: &RunArgs) -> Vec<OsString> {
    args.proxy_arg.iter().map(OsString::from).collect()
}

async fn bench_direct(ctx: &Ctx<'_>, figs: &mut Figures) -> Result<()> {
    let [nginx, echo] = ctx.backends;
    let path = ctx.request_path();
    let mut client = Client::new(local(ctx.nginx_port), None);
    check_get(&mut client, &path, &ctx.body).await?;
    let url = format!("http://127.0.0.1:{}{path}", ctx.nginx_port);
    let http = measure_http(ctx, nginx, &url, "1 route", figs).await?;
    figs.http_1 = Some(http);
    figs.rss_1_kib = nginx.rss_kib().ok();
    ws::check(local(ctx.ws_port), WS_PATH).await?;
    eprintln!("   websocket echo, {} s", ctx.args.duration);
    let result = ws_load(ctx, local(ctx.ws_port), echo, figs).await?;
    figs.ws = Some(result);
    Ok(())
}

async fn bench_proxy(
    ctx: &Ctx<'_>,
    subject: Subject,
    program: OsString,
    extra_args: Vec<OsString>,
    figs: &mut Figures,
) -> Result<()> {
    let public_port = procs::free_port()?;
    let api_port = procs::free_port()?;
    let mut args = extra_args;
    for flag in [
        "--ip".to_owned(),
        "127.0.0.1".to_owned(),
        "--port".to_owned(),
        public_port.to_string(),
        "--api-ip".to_owned(),
        "127.0.0.1".to_owned(),
        "--api-port".to_owned(),
        api_port.to_string(),
    ] {
        args.push(OsString::from(flag));
    }
    let name = match subject {
        Subject::Chp => "chp",
        Subject::Ours | Subject::Direct => "chp-proxy",
    };
    let spec = Spec {
        name,
        program,
        args,
        env: vec![("CONFIGPROXY_AUTH_TOKEN".to_owned(), TOKEN.to_owned())],
    };
    let mut proxy = Proc::spawn_pinned(
        spec,
        ctx.args.server_core,
        &ctx.dir.join(format!("{name}.log")),
    )?;
    proxy
        .wait_listening(
            &[local(api_port), local(public_port)],
            Duration::from_secs(30),
        )
        .await?;
    let result = Box::pin(measure_proxy(
        ctx,
        subject,
        &mut proxy,
        public_port,
        api_port,
        figs,
    ))
    .await;
    let result = result.map_err(|e| {
        let tail = proxy.log_tail(10);
        if tail.is_empty() {
            e
        } else {
            e.context(format!("{name} log tail:\n{tail}"))
        }
    });
    if let Err(e) = proxy.ensure_running() {
        figs.notes.push(format!("{e:#}"));
    }
    proxy.stop().await?;
    result
}

async fn measure_proxy(
    ctx: &Ctx<'_>,
    subject: Subject,
    proxy: &mut Proc,
    public_port: u16,
    api_port: u16,
    figs: &mut Figures,
) -> Result<()> {
    let args = ctx.args;
    let mut api = Client::new(local(api_port), Some(TOKEN));
    let mut public = Client::new(local(public_port), None);
    let backend = format!("http://127.0.0.1:{}", ctx.nginx_port);
    let path = ctx.request_path();
    let url = format!("http://127.0.0.1:{public_port}{path}");

    // One route.
    let answer = api
        .send(
            Method::POST,
            &format!("/api/routes{}", route_key(ctx.target_index)),
            Some(route_body(ctx.target_index, &backend)),
        )
        .await?;
    expect_status(&answer, StatusCode::CREATED, "adding the first route")?;
    check_get(&mut public, &path, &ctx.body).await?;
    let http = measure_http(ctx, proxy, &url, "1 route", figs).await?;
    figs.http_1 = Some(http);
    figs.rss_1_kib = proxy.rss_kib().ok();
    proxy.ensure_running()?;

    // Websocket echo through a route of its own, removed afterwards.
    let body = serde_json::json!({ "target": format!("http://127.0.0.1:{}", ctx.ws_port) });
    let answer = api
        .send(
            Method::POST,
            "/api/routes/ws",
            Some(Bytes::from(body.to_string())),
        )
        .await?;
    expect_status(&answer, StatusCode::CREATED, "adding the websocket route")?;
    ws::check(local(public_port), WS_PATH).await?;
    eprintln!("   websocket echo, {} s", args.duration);
    let result = ws_load(ctx, local(public_port), proxy, figs).await?;
    figs.ws = Some(result);
    let answer = api.send(Method::DELETE, "/api/routes/ws", None).await?;
    expect_status(
        &answer,
        StatusCode::NO_CONTENT,
        "deleting the websocket route",
    )?;
    proxy.ensure_running()?;

    // Many routes. The target route is posted again in passing (a replace),
    // so the table ends up with exactly --routes entries.
    wait_idle(ctx).await?;
    eprintln!("   adding {} routes", args.routes);
    let watch = Watch::start(ctx, proxy)?;
    figs.add_10k = Some(add_routes(&mut api, 0..args.routes, &backend, &mut figs.notes).await?);
    watch.finish(ctx, proxy, figs, "the route adds")?;
    wait_idle(ctx).await?;
    let watch = Watch::start(ctx, proxy)?;
    figs.list_10k = Some(list_routes(ctx, &mut api, args.routes, &mut figs.notes).await?);
    watch.finish(ctx, proxy, figs, "the listings")?;
    check_get(&mut public, &path, &ctx.body).await?;
    let http = measure_http(ctx, proxy, &url, "many routes", figs).await?;
    figs.http_10k = Some(http);
    figs.rss_10k_kib = proxy.rss_kib().ok();
    proxy.ensure_running()?;

    // A huge table.
    let big = args.big_routes > args.routes && (subject == Subject::Ours || args.chp_big_routes);
    if big {
        wait_idle(ctx).await?;
        eprintln!("   adding routes up to {}", args.big_routes);
        let watch = Watch::start(ctx, proxy)?;
        figs.add_big = Some(
            add_routes(
                &mut api,
                args.routes..args.big_routes,
                &backend,
                &mut figs.notes,
            )
            .await?,
        );
        watch.finish(ctx, proxy, figs, "the route adds up to the huge table")?;
        wait_idle(ctx).await?;
        let watch = Watch::start(ctx, proxy)?;
        figs.list_big = Some(list_routes(ctx, &mut api, args.big_routes, &mut figs.notes).await?);
        watch.finish(ctx, proxy, figs, "the listings of the huge table")?;
        check_get(&mut public, &path, &ctx.body).await?;
        let http = measure_http(ctx, proxy, &url, "huge table", figs).await?;
        figs.http_big = Some(http);
        figs.rss_big_kib = proxy.rss_kib().ok();
    }
    Ok(())
}

/// The body the hub would post for a user server.
fn route_body(i: u32, target: &str) -> Bytes {
    let body = serde_json::json!({
        "target": target,
        "jupyterhub": true,
        "user": format!("u{i:06}"),
        "server_name": "",
    });
    Bytes::from(body.to_string())
}

fn expect_status(answer: &crate::api::Answer, want: StatusCode, what: &str) -> Result<()> {
    if answer.status != want {
        bail!(
            "{what}: expected {want}, got {} with body {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(())
}

/// One GET that must return 200 and the backend's body.
async fn check_get(client: &mut Client, path: &str, body: &str) -> Result<()> {
    let answer = client.send(Method::GET, path, None).await?;
    expect_status(&answer, StatusCode::OK, &format!("GET {path}"))?;
    if answer.body != body.as_bytes() {
        bail!(
            "GET {path}: unexpected body {:?}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(())
}

/// A warm-up run, then a measured run with the CPU time `target` used.
async fn measure_http(
    ctx: &Ctx<'_>,
    target: &Proc,
    url: &str,
    what: &str,
    figs: &mut Figures,
) -> Result<Http> {
    let args = ctx.args;
    let run = |secs| wrk::run(&args.wrk, args.load_core, url, args.connections, secs);
    if args.warmup > 0 {
        eprintln!("   wrk warm-up, {what}, {} s", args.warmup);
        run(args.warmup).await?;
    }
    let mut attempt = 0;
    let (result, usage) = loop {
        wait_idle(ctx).await?;
        eprintln!("   wrk, {what}, {} s", args.duration);
        let before = Snapshot::take(target, &ctx.backends)?;
        let started = Instant::now();
        let result = run(args.duration).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let usage = before.until(&Snapshot::take(target, &ctx.backends)?);
        if !disturbed(ctx, figs, &format!("wrk, {what}"), &usage, elapsed, attempt) {
            break (result, usage);
        }
        attempt += 1;
    };
    if result.non_2xx_3xx > 0 || result.socket_errors > 0 {
        figs.notes.push(format!(
            "wrk ({what}): {} non-2xx/3xx responses and {} socket errors out of {} requests",
            result.non_2xx_3xx, result.socket_errors, result.requests
        ));
    }
    let cpu_us_per_request = (result.requests > 0)
        .then(|| usage.target as f64 / ctx.ticks_per_sec as f64 * 1e6 / result.requests as f64);
    eprintln!(
        "     {:.0} req/s, p99 {:.2} ms",
        result.requests_per_sec, result.p99_ms
    );
    Ok(Http {
        wrk: result,
        cpu_us_per_request,
    })
}

/// The websocket load, with the CPU time `target` used.
async fn ws_load(
    ctx: &Ctx<'_>,
    addr: SocketAddr,
    target: &Proc,
    figs: &mut Figures,
) -> Result<ws::WsResult> {
    let args = ctx.args;
    let mut attempt = 0;
    let (mut result, usage) = loop {
        wait_idle(ctx).await?;
        let sample = || (Instant::now(), Snapshot::take(target, &ctx.backends));
        let (result, (t0, before), (t1, after)) = ws::load(
            addr,
            WS_PATH,
            args.ws_connections,
            Duration::from_secs(args.warmup),
            Duration::from_secs(args.duration),
            sample,
        )
        .await?;
        let usage = before?.until(&after?);
        let secs = (t1 - t0).as_secs_f64();
        if !disturbed(ctx, figs, "the websocket run", &usage, secs, attempt) {
            break (result, usage);
        }
        attempt += 1;
    };
    result.cpu_us_per_round_trip = (result.round_trips > 0)
        .then(|| usage.target as f64 / ctx.ticks_per_sec as f64 * 1e6 / result.round_trips as f64);
    eprintln!(
        "     {:.0} round trips/s, p99 {:.2} ms",
        result.round_trips_per_sec, result.p99_ms
    );
    Ok(result)
}

/// Posts routes `range` one after another on one keep-alive connection.
async fn add_routes(
    api: &mut Client,
    range: std::ops::Range<u32>,
    backend: &str,
    notes: &mut Vec<String>,
) -> Result<Adds> {
    let start = Instant::now();
    let mut times_ms = Vec::with_capacity(range.len());
    let mut failures = 0_u64;
    let mut first_failure = None;
    for i in range.clone() {
        let answer = api
            .send(
                Method::POST,
                &format!("/api/routes{}", route_key(i)),
                Some(route_body(i, backend)),
            )
            .await?;
        times_ms.push(answer.elapsed.as_secs_f64() * 1000.0);
        if answer.status != StatusCode::CREATED {
            failures += 1;
            first_failure.get_or_insert_with(|| {
                format!(
                    "{} {:?}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                )
            });
            if failures == 100 && times_ms.len() == 100 {
                bail!("the first 100 route adds all failed, e.g. {first_failure:?}");
            }
        }
    }
    let total_s = start.elapsed().as_secs_f64();
    if let Some(example) = first_failure {
        notes.push(format!(
            "{failures} of {} route adds did not answer 201, e.g. {example}",
            range.len()
        ));
    }
    let adds = Adds::from_times(times_ms, total_s);
    eprintln!(
        "     median {:.3} ms, p99 {:.3} ms, total {:.2} s",
        adds.median_ms, adds.p99_ms, adds.total_s
    );
    Ok(adds)
}

/// Fetches the whole listing `--list-repeats` times and checks its size.
async fn list_routes(
    ctx: &Ctx<'_>,
    api: &mut Client,
    expected: u32,
    notes: &mut Vec<String>,
) -> Result<Listing> {
    let mut times_ms = Vec::new();
    let mut last = Bytes::new();
    for _ in 0..ctx.args.list_repeats.max(1) {
        let answer = api.send(Method::GET, "/api/routes", None).await?;
        expect_status(&answer, StatusCode::OK, "GET /api/routes")?;
        times_ms.push(answer.elapsed.as_secs_f64() * 1000.0);
        last = answer.body;
    }
    let parsed: serde_json::Value =
        serde_json::from_slice(&last).context("GET /api/routes did not return JSON")?;
    let routes = parsed
        .as_object()
        .context("GET /api/routes did not return an object")?
        .len();
    if routes != expected as usize {
        notes.push(format!(
            "GET /api/routes listed {routes} routes, expected {expected}"
        ));
    }
    let listing = Listing {
        median_ms: crate::report::median(&mut times_ms),
        bytes: last.len(),
        routes,
    };
    eprintln!(
        "     listing {routes} routes: median {:.2} ms, {} bytes",
        listing.median_ms, listing.bytes
    );
    Ok(listing)
}
