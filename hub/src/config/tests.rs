//! Tests of loading as a whole: layering, error messages, unknown keys, the generated file,
//! `--show-config` redaction, validation across keys, and the reference doc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser as _;
use tempfile::TempDir;

use super::render::{BLOCK_EXAMPLES, LEAF_EXAMPLES};
use super::schema::{Kind, SectionSchema, join};
use super::*;

// === helpers ===

/// A working directory with an optional config file in it.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Loads with `args` (after `hub`) and `env`, the fixture's directory standing in for the
    /// working directory.
    fn load(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("hub").chain(args.iter().copied())).unwrap();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load_in(&cli, &|name| env.get(name).cloned(), self.dir.path())
    }

    /// Writes `text` as the config file and loads it with no environment or flags.
    fn load_file(&self, text: &str) -> Result<Loaded, ConfigError> {
        let path = self.write("config.toml", text);
        self.load(&["--config", path.to_str().unwrap()], &[])
    }
}

fn only_problem(err: &ConfigError) -> String {
    assert_eq!(err.problems().len(), 1, "{err}");
    err.problems()[0].to_string()
}

fn error_of(result: Result<Loaded, ConfigError>) -> ConfigError {
    match result {
        Ok(loaded) => panic!("expected an error, loaded {:?}", loaded.config),
        Err(e) => e,
    }
}

/// Every plain key as a dotted path, following nested sections (not tables of entries).
fn leaf_paths(schema: &SectionSchema, prefix: &str, out: &mut Vec<String>) {
    for field in schema.fields {
        let path = join(prefix, field.name);
        match (field.kind)() {
            Kind::Section(s) => leaf_paths(s, &path, out),
            Kind::Sections(s) | Kind::NamedSections(s) => {
                for key in s.fields {
                    out.push(format!("{path}.*.{}", key.name));
                }
            }
            _ => out.push(path),
        }
    }
}

fn all_leaf_paths() -> Vec<String> {
    let mut out = Vec::new();
    leaf_paths(HubConfig::schema(), "", &mut out);
    out
}

// === layering ===

#[test]
fn no_file_no_env_no_flags_gives_the_defaults() {
    let fx = Fixture::new();
    let loaded = fx.load(&[], &[]).unwrap();
    let mut expected = HubConfig::default();
    // The only thing filled in at load time.
    expected.proxy.auth_token = loaded.config.proxy.auth_token.clone();
    assert_eq!(loaded.config, expected);
    assert!(loaded.config_file().is_none());
    assert_eq!(loaded.provenance.source_of("hub.port"), Source::Default);
}

#[test]
fn defaults_match_jupyterhub() {
    let c = HubConfig::default();
    assert_eq!(c.hub.bind_url.as_str(), "http://0.0.0.0:8000/");
    assert_eq!(c.hub.hub_bind_addr().to_string(), "127.0.0.1:8081");
    assert_eq!(c.hub.base_url.as_str(), "/");
    assert_eq!(c.hub.db_url, DbUrl::Sqlite("jupyterhub.sqlite".into()));
    assert_eq!(
        c.hub.cookie_secret_file,
        Path::new("jupyterhub_cookie_secret")
    );
    assert_eq!(
        c.hub.cookie_max_age_days.duration(),
        Duration::from_secs(14 * 86_400)
    );
    assert_eq!(c.hub.oauth_token_lifetime(), Duration::from_secs(1_209_600));
    assert_eq!(c.hub.api_page_default_limit.get(), 50);
    assert_eq!(c.hub.api_page_max_limit.get(), 200);
    assert_eq!(c.hub.token_expires_in_max_seconds.get(), None);
    assert_eq!(c.hub.concurrent_spawn_limit.get(), Some(100));
    assert_eq!(c.hub.active_server_limit.get(), None);
    assert_eq!(c.hub.last_activity_interval, Duration::from_secs(300));
    assert!(c.hub.redirect_to_server && c.hub.authenticate_prometheus);
    assert!(c.hub.cleanup_servers && c.hub.cleanup_proxy);
    assert!(!c.hub.allow_named_servers && !c.hub.trust_user_provided_tokens);
    assert_eq!(c.hub.metrics_prefix.as_str(), "jupyterhub");
    assert!(c.proxy.should_start);
    assert_eq!(c.proxy.command.program(), "chp-proxy");
    assert_eq!(c.proxy.api_url.as_str(), "http://127.0.0.1:8001/");
    assert_eq!(c.proxy.pid_file, Path::new("jupyterhub-proxy.pid"));
    assert_eq!(c.proxy.check_running_interval, Duration::from_secs(5));
    assert_eq!(c.authenticator.class, AuthenticatorClass::Pam);
    assert_eq!(c.spawner.cmd.argv(), ["singleuser-auth-shim"]);
    assert_eq!(c.spawner.start_timeout, Duration::from_secs(60));
    assert_eq!(c.spawner.http_timeout, Duration::from_secs(30));
    assert_eq!(c.spawner.poll_interval, Duration::from_secs(30));
    assert!(c.spawner.env_keep.contains(&"PATH".to_owned()));
    assert_eq!(
        c.hub.hub_connect_url().as_str(),
        "http://127.0.0.1:8081/hub/"
    );
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let fx = Fixture::new();
    let file = fx.write("c.toml", "[hub]\nport = 1000\nhub_port = 1001\n");
    let file = file.to_str().unwrap();
    let env = [
        ("JUPYTERHUB_HUB_PORT", "2000"),
        ("JUPYTERHUB_HUB_HUB_PORT", "2001"),
    ];

    let loaded = fx
        .load(&["--config", file, "--port", "3000"], &env)
        .unwrap();
    assert_eq!(loaded.config.hub.port.map(Port::get), Some(3000));
    assert_eq!(loaded.config.hub.hub_port.get(), 2001);
    assert_eq!(
        loaded.provenance.source_of("hub.port"),
        Source::Cli("--port".into())
    );
    assert_eq!(
        loaded.provenance.source_of("hub.hub_port"),
        Source::Env("JUPYTERHUB_HUB_HUB_PORT".into())
    );

    let loaded = fx.load(&["--config", file], &env).unwrap();
    assert_eq!(loaded.config.hub.port.map(Port::get), Some(2000));

    let loaded = fx.load(&["--config", file], &[]).unwrap();
    assert_eq!(loaded.config.hub.port.map(Port::get), Some(1000));
    assert_eq!(
        loaded.provenance.source_of("hub.port"),
        Source::File(PathBuf::from(file))
    );
    assert_eq!(loaded.provenance.source_of("hub.base_url"), Source::Default);
    // `port` is the public port: it lands in the bind URL.
    assert_eq!(loaded.config.hub.bind_url.port(), Some(1000));
}

#[test]
fn default_file_is_read_from_the_working_directory() {
    let fx = Fixture::new();
    assert!(fx.load(&[], &[]).unwrap().config_file().is_none());
    fx.write("jupyterhub_config.toml", "[spawner]\nstart_timeout = 120\n");
    let loaded = fx.load(&[], &[]).unwrap();
    assert_eq!(
        loaded.config.spawner.start_timeout,
        Duration::from_secs(120)
    );
    assert_eq!(
        loaded.config_file(),
        Some(fx.path("jupyterhub_config.toml").as_path())
    );
}

#[test]
fn config_file_from_the_environment() {
    let fx = Fixture::new();
    let path = fx.write("elsewhere.toml", "[hub]\nhub_port = 9999\n");
    let loaded = fx
        .load(&[], &[("JUPYTERHUB_CONFIG", path.to_str().unwrap())])
        .unwrap();
    assert_eq!(loaded.config.hub.hub_port.get(), 9999);
}

#[test]
fn a_named_config_file_must_exist() {
    let fx = Fixture::new();
    let missing = fx.path("missing.toml");
    let err = error_of(fx.load(&["--config", missing.to_str().unwrap()], &[]));
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("missing.toml"));
}

#[test]
fn a_python_config_gets_pointed_at_toml() {
    let fx = Fixture::new();
    let path = fx.write("jupyterhub_config.py", "c.JupyterHub.port = 8000\n");
    let err = error_of(fx.load(&["-f", path.to_str().unwrap()], &[]));
    assert!(matches!(err, ConfigError::PythonConfig { .. }));
    assert!(err.to_string().contains("--generate-config"), "{err}");
    // Found in the working directory, it is mentioned but not read.
    let loaded = fx.load(&[], &[]).unwrap();
    assert!(
        loaded
            .notices
            .iter()
            .any(|n| n.contains("jupyterhub_config.py"))
    );
}

#[test]
fn environment_values_are_converted_to_each_key_type() {
    let fx = Fixture::new();
    let loaded = fx
        .load(
            &[],
            &[
                ("JUPYTERHUB_SPAWNER_START_TIMEOUT", "120"),
                ("JUPYTERHUB_SPAWNER_HTTP_TIMEOUT", "2.5"),
                ("JUPYTERHUB_HUB_ALLOW_NAMED_SERVERS", "yes"),
                ("JUPYTERHUB_HUB_COOKIE_MAX_AGE_DAYS", "0.5"),
                ("JUPYTERHUB_HUB_ACTIVE_SERVER_LIMIT", "10"),
                ("JUPYTERHUB_PROXY_API_URL", "http://proxy:8001"),
                ("JUPYTERHUB_PROXY_COMMAND", "/usr/local/bin/chp-proxy"),
                ("JUPYTERHUB_AUTHENTICATOR_CLASS", "dummy"),
                ("JUPYTERHUB_AUTHENTICATOR_PAM_SERVICE", "jupyterhub"),
                ("JUPYTERHUB_HUB_LOG_LEVEL", "WARNING"),
                ("JUPYTERHUB_HUB_DB_URL", "postgresql://hub:pw@db/hub"),
            ],
        )
        .unwrap();
    let c = &loaded.config;
    assert_eq!(c.spawner.start_timeout, Duration::from_secs(120));
    assert_eq!(c.spawner.http_timeout, Duration::from_millis(2500));
    assert!(c.hub.allow_named_servers);
    assert_eq!(
        c.hub.cookie_max_age_days.duration(),
        Duration::from_secs(43_200)
    );
    assert_eq!(c.hub.active_server_limit.get(), Some(10));
    assert_eq!(c.proxy.api_url.host_str(), Some("proxy"));
    assert_eq!(c.proxy.command.program(), "/usr/local/bin/chp-proxy");
    assert_eq!(c.authenticator.class, AuthenticatorClass::Dummy);
    assert_eq!(c.authenticator.pam.service, "jupyterhub");
    assert_eq!(c.hub.log_level, LogLevel::Warn);
    assert!(matches!(c.hub.db_url, DbUrl::Postgres(_)));
}

#[test]
fn an_empty_environment_variable_counts_as_unset() {
    let fx = Fixture::new();
    let loaded = fx
        .load(
            &[],
            &[("JUPYTERHUB_HUB_HUB_PORT", ""), ("JPY_COOKIE_SECRET", "")],
        )
        .unwrap();
    assert_eq!(loaded.config.hub.hub_port.get(), 8081);
    assert!(loaded.config.hub.cookie_secret.is_none());
}

#[test]
fn jupyterhub_environment_variables_are_read() {
    let fx = Fixture::new();
    let loaded = fx
        .load(
            &[],
            &[
                ("CONFIGPROXY_AUTH_TOKEN", "proxy-token-1234"),
                ("JPY_COOKIE_SECRET", "00ff00ff"),
                ("JUPYTERHUB_CRYPT_KEY", "crypt-key-material"),
                ("JUPYTERHUB_METRICS_PREFIX", "myhub"),
            ],
        )
        .unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.proxy.auth_token.as_ref().map(Secret::expose),
        Some("proxy-token-1234")
    );
    assert_eq!(
        c.hub.cookie_secret.as_ref().map(|s| s.as_bytes().to_vec()),
        Some(vec![0, 255, 0, 255])
    );
    assert_eq!(
        c.hub.crypt_key.as_ref().map(Secret::expose),
        Some("crypt-key-material")
    );
    assert_eq!(c.hub.metrics_prefix.as_str(), "myhub");
    assert_eq!(
        loaded.provenance.source_of("proxy.auth_token"),
        Source::Env("CONFIGPROXY_AUTH_TOKEN".into())
    );
}

#[test]
fn environment_cookie_secret_wins_over_the_file() {
    let fx = Fixture::new();
    let file = fx.path("jupyterhub_cookie_secret");
    let loaded = fx
        .load(&[], &[("JUPYTERHUB_COOKIE_SECRET", "0102")])
        .unwrap();
    let hub = HubSection {
        cookie_secret_file: file.clone(),
        ..loaded.config.hub
    };
    let secret = crate::cookie_secret::load_for(&hub).unwrap();
    assert_eq!(secret.as_bytes(), [1, 2]);
    assert!(
        !file.exists(),
        "no file is written when the secret comes from the environment"
    );
}

#[test]
fn the_most_specific_environment_variable_wins_and_a_conflict_is_noted() {
    let fx = Fixture::new();
    let loaded = fx
        .load(
            &[],
            &[
                ("JUPYTERHUB_COOKIE_SECRET", "aa"),
                ("JPY_COOKIE_SECRET", "bb"),
            ],
        )
        .unwrap();
    assert_eq!(
        loaded
            .config
            .hub
            .cookie_secret
            .as_ref()
            .map(|s| s.as_bytes().to_vec()),
        Some(vec![0xaa])
    );
    assert!(
        loaded
            .notices
            .iter()
            .any(|n| n.contains("JPY_COOKIE_SECRET")),
        "{:?}",
        loaded.notices
    );
    let loaded = fx
        .load(
            &[],
            &[
                ("JUPYTERHUB_PROXY_AUTH_TOKEN", "generic-token"),
                ("CONFIGPROXY_AUTH_TOKEN", "chp-token-abc"),
            ],
        )
        .unwrap();
    assert_eq!(
        loaded.config.proxy.auth_token.as_ref().map(Secret::expose),
        Some("generic-token")
    );
}

#[test]
fn debug_flag_sets_the_log_level() {
    let fx = Fixture::new();
    let loaded = fx
        .load(&["--debug"], &[("JUPYTERHUB_HUB_LOG_LEVEL", "error")])
        .unwrap();
    assert_eq!(loaded.config.hub.log_level, LogLevel::Debug);
    assert_eq!(
        loaded.provenance.source_of("hub.log_level"),
        Source::Cli("--debug".into())
    );
}

#[test]
fn flags_set_their_keys() {
    let fx = Fixture::new();
    let loaded = fx
        .load(
            &[
                "--ip",
                "10.0.0.1",
                "--port",
                "443",
                "--base-url",
                "jupyter",
                "--db",
                "sqlite:////var/lib/jupyterhub/hub.sqlite",
                "--log-level",
                "debug",
            ],
            &[],
        )
        .unwrap();
    let hub = &loaded.config.hub;
    assert_eq!(hub.bind_url.as_str(), "http://10.0.0.1:443/jupyter/");
    assert_eq!(hub.base_url.as_str(), "/jupyter/");
    assert_eq!(
        hub.db_url,
        DbUrl::Sqlite("/var/lib/jupyterhub/hub.sqlite".into())
    );
    assert_eq!(hub.log_level, LogLevel::Debug);
    assert_eq!(hub.hub_prefix(), "/jupyter/hub/");
}

// === errors name the key and the source ===

#[test]
fn a_bad_value_in_the_file_names_key_and_file() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[hub]\nport = 70000\n"));
    let file = fx.path("config.toml");
    assert_eq!(
        only_problem(&err),
        format!(
            "hub.port: expected an integer from 1 to 65535, found the integer 70000 (from {})",
            file.display()
        )
    );
}

#[test]
fn a_bad_value_in_the_environment_names_the_variable() {
    let fx = Fixture::new();
    let err = error_of(fx.load(&[], &[("JUPYTERHUB_HUB_PORT", "eighty")]));
    assert_eq!(
        only_problem(&err),
        "hub.port: expected an integer from 1 to 65535, found the string \"eighty\" \
         (from environment JUPYTERHUB_HUB_PORT)"
    );
    let err = error_of(fx.load(&[], &[("JUPYTERHUB_SPAWNER_DEBUG", "maybe")]));
    assert_eq!(
        only_problem(&err),
        "spawner.debug: expected true or false, found the string \"maybe\" \
         (from environment JUPYTERHUB_SPAWNER_DEBUG)"
    );
}

#[test]
fn a_bad_flag_names_the_flag() {
    let fx = Fixture::new();
    let err = error_of(fx.load(&["--port", "0"], &[]));
    assert_eq!(
        only_problem(&err),
        "hub.port: expected an integer from 1 to 65535, found the integer 0 \
         (from command line --port)"
    );
    let err = error_of(fx.load(&["--db-url", "mysql://x/y"], &[]));
    let message = only_problem(&err);
    assert!(message.starts_with("hub.db_url: "), "{message}");
    assert!(message.contains("MySQL is not supported"), "{message}");
    assert!(
        message.ends_with("(from command line --db-url)"),
        "{message}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file(
        "[hub]\nport = \"x\"\nbase_url = \"/a b/\"\n[spawner]\nstart_timeout = -1\n\
         [proxy]\napi_url = \"ftp://x\"\n",
    ));
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "hub.base_url",
            "hub.port",
            "proxy.api_url",
            "spawner.start_timeout"
        ]
    );
    let text = err.to_string();
    assert!(text.starts_with("4 configuration problems:"), "{text}");
}

#[test]
fn a_toml_syntax_error_names_the_file_and_line() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[hub]\nport = = 3\n"));
    assert!(matches!(err, ConfigError::Syntax { .. }));
    let text = err.to_string();
    assert!(text.contains("config.toml"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn secret_values_are_never_repeated_in_errors() {
    let fx = Fixture::new();
    let err = error_of(fx.load(&[], &[("JPY_COOKIE_SECRET", "not-hex-s3cr3t")]));
    let text = only_problem(&err);
    assert!(text.starts_with("hub.cookie_secret: "), "{text}");
    assert!(
        text.ends_with("(from environment JPY_COOKIE_SECRET)"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");

    let err = error_of(fx.load_file("[proxy]\nauth_token = 12345678\n"));
    assert!(!only_problem(&err).contains("12345678"));

    let err = error_of(fx.load_file("[hub]\ndb_url = \"oracle://u:s3cr3t@h/d\"\n"));
    assert!(!only_problem(&err).contains("s3cr3t"));

    let err = error_of(fx.load_file("[hub.api_tokens]\nshort = \"alice\"\n"));
    let text = only_problem(&err);
    assert!(text.starts_with("hub.api_tokens: "), "{text}");
    assert!(!text.contains("short"), "{text}");
}

#[test]
fn wrong_types_are_described() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[hubb]\nport = 1\n"));
    assert!(only_problem(&err).starts_with("hubb: unknown section, did you mean `hub`?"));
    let err = error_of(fx.load_file("hub = 3\n"));
    assert!(only_problem(&err).starts_with("hub: expected a table, found the integer 3"));
    let err = error_of(fx.load_file("[authenticator]\nadmin_users = \"alice\"\n"));
    assert!(
        only_problem(&err)
            .starts_with("authenticator.admin_users: expected a list of strings, found the string")
    );
    let err = error_of(fx.load_file("[authenticator]\nclass = \"ldap\"\n"));
    assert!(only_problem(&err).contains("one of `pam`, `dummy`, `shared-password`"));
}

// === unknown keys ===

#[test]
fn a_typo_is_an_error_with_a_suggestion() {
    let fx = Fixture::new();
    let file = fx.path("config.toml");
    let err = error_of(fx.load_file("[hub]\nprot = 8000\n"));
    assert_eq!(
        only_problem(&err),
        format!(
            "hub.prot: unknown key, did you mean `port`? (from {})",
            file.display()
        )
    );
    let err = error_of(fx.load_file("[spawner]\nstart-timeout = 3\n"));
    assert!(only_problem(&err).contains("did you mean `start_timeout`?"));
    let err = error_of(fx.load_file("[[services]]\nname = \"x\"\nurll = \"http://a\"\n"));
    assert!(only_problem(&err).starts_with("services[0].urll: unknown key, did you mean `url`?"));
    let err = error_of(fx.load_file("[authenticator.pam]\nservise = \"x\"\n"));
    assert!(only_problem(&err).contains("did you mean `service`?"));
}

#[test]
fn a_stranger_key_points_at_the_key_list() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[hub]\nfrobnicate = true\n"));
    let text = only_problem(&err);
    assert!(text.starts_with("hub.frobnicate: unknown key"), "{text}");
    assert!(text.contains("--generate-config"), "{text}");
}

#[test]
fn jupyterhub_class_names_lead_to_our_sections() {
    let fx = Fixture::new();
    for (theirs, ours) in [
        ("JupyterHub", "hub"),
        ("ConfigurableHTTPProxy", "proxy"),
        ("PAMAuthenticator", "authenticator"),
        ("Spawner", "spawner"),
        ("LocalProcessSpawner", "spawner"),
    ] {
        let err = error_of(fx.load_file(&format!("[{theirs}]\nx = 1\n")));
        assert!(
            only_problem(&err).contains(&format!("did you mean `{ours}`?")),
            "{theirs}: {err}"
        );
    }
    let err = error_of(fx.load_file("[[service]]\nname = \"x\"\n"));
    assert!(only_problem(&err).contains("did you mean `services`?"));
}

// === --generate-config ===

#[test]
fn the_generated_file_parses_back_to_the_defaults() {
    let text = generate_config();
    let parsed = HubConfig::from_toml_str(&text, Path::new("generated.toml")).unwrap();
    assert_eq!(parsed, HubConfig::default());
}

#[test]
fn the_generated_file_documents_every_key() {
    let text = generate_config();
    for path in all_leaf_paths() {
        let name = path.rsplit('.').next().unwrap();
        let listed = text.contains(&format!("\n{name} = "))
            || text.contains(&format!("\n# {name} = "))
            || text.contains(&format!("\n#   {name}: "));
        assert!(listed, "{path} is not in the generated config");
    }
    // The first line of every key's and every section's doc comment is there.
    fn first_line(doc: &'static str) -> &'static str {
        doc.lines().next().unwrap_or_default().trim()
    }
    fn first_lines(schema: &SectionSchema, out: &mut Vec<&'static str>) {
        for field in schema.fields {
            match (field.kind)() {
                Kind::Section(s) | Kind::Sections(s) | Kind::NamedSections(s) => {
                    out.push(first_line(s.doc));
                    first_lines(s, out);
                }
                _ => out.push(first_line(field.doc)),
            }
        }
    }
    let mut lines = Vec::new();
    first_lines(HubConfig::schema(), &mut lines);
    for line in lines.into_iter().filter(|l| !l.is_empty()) {
        assert!(text.contains(line), "doc line {line:?} missing");
    }
    // And every environment variable and flag.
    assert!(text.contains("Environment: JUPYTERHUB_HUB_PORT."));
    assert!(text.contains("Flag: --port."));
    assert!(text.contains("JUPYTERHUB_PROXY_AUTH_TOKEN, CONFIGPROXY_AUTH_TOKEN"));
}

#[test]
fn every_key_has_a_doc_comment() {
    fn check(schema: &SectionSchema, prefix: &str) {
        assert!(!schema.doc.trim().is_empty(), "section {prefix} has no doc");
        for field in schema.fields {
            let path = join(prefix, field.name);
            assert!(!field.doc.trim().is_empty(), "{path} has no doc");
            match (field.kind)() {
                Kind::Section(s) | Kind::Sections(s) | Kind::NamedSections(s) => check(s, &path),
                _ => {}
            }
        }
    }
    check(HubConfig::schema(), "");
}

#[test]
fn every_key_unset_by_default_has_an_example_that_works() {
    let defaults = toml::Value::Table(generate_config().parse().unwrap());
    for path in all_leaf_paths().iter().filter(|p| !p.contains('*')) {
        let set = path
            .split('.')
            .try_fold(&defaults, |value, key| value.get(key))
            .is_some();
        if set {
            continue;
        }
        let (_, example) = LEAF_EXAMPLES
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("{path} is unset by default and has no example"));
        let (section, key) = path.rsplit_once('.').unwrap();
        let text = format!("[{section}]\n{key} = {example}\n");
        let result = HubConfig::from_toml_str(&text, Path::new("example.toml"));
        if example.starts_with("\"<") {
            // Placeholders for secrets must not work as they are.
            let err = result.unwrap_err();
            assert!(
                err.problems().iter().any(|p| p.key == *path),
                "{path}: {err}"
            );
        } else if let Err(err) = result {
            // Some examples need a companion key; nothing else may be wrong.
            assert!(
                err.problems().iter().all(|p| p.key != *path),
                "{path} example: {err}"
            );
        }
    }
    for (path, _) in LEAF_EXAMPLES {
        assert!(all_leaf_paths().contains(&(*path).to_owned()), "{path}");
    }
}

#[test]
fn the_block_examples_are_valid() {
    let all: String = BLOCK_EXAMPLES
        .iter()
        .map(|(_, text)| format!("{text}\n\n"))
        .collect();
    let config = HubConfig::from_toml_str(&all, Path::new("examples.toml")).unwrap();
    assert_eq!(config.services.len(), 2);
    assert_eq!(config.roles[0].services, ["idle-culler"]);
    assert_eq!(config.groups["teachers"].users, ["alice", "bob"]);
    assert!(config.hub.custom_scopes.contains_key("custom:grades:read"));
    assert_eq!(config.profiles.len(), 2);
    assert!(config.profiles[0].default);
    assert_eq!(config.profiles[1].groups, ["teachers"]);
}

// === --show-config ===

const EVERY_SECRET: &str = r#"
[hub]
db_url = "postgresql://hub:db-password-111@db.internal:5432/jupyterhub"
crypt_key = "crypt-key-222"

[hub.api_tokens]
"api-token-for-alice-333" = "alice"
"api-token-for-bob-444" = "bob"

[proxy]
auth_token = "proxy-token-555"

[authenticator]
class = "shared-password"
admin_users = ["root"]

[authenticator.dummy]
password = "dummy-password-666"

[authenticator.shared_password]
global_password = "shared-password-777"
admin_password = "admin-password-888-888-888-888-888"

[[services]]
name = "dashboard"
url = "http://127.0.0.1:10101"
api_token = "service-token-999"
"#;

const SECRET_TEXTS: &[&str] = &[
    "db-password-111",
    "crypt-key-222",
    "api-token-for-alice-333",
    "api-token-for-bob-444",
    "proxy-token-555",
    "dummy-password-666",
    "shared-password-777",
    "admin-password-888",
    "service-token-999",
    "c0ffee",
];

#[test]
fn show_config_redacts_every_secret() {
    let fx = Fixture::new();
    let path = fx.write("secrets.toml", EVERY_SECRET);
    let loaded = fx
        .load(
            &["-f", path.to_str().unwrap()],
            &[("JUPYTERHUB_COOKIE_SECRET", "c0ffeec0ffee")],
        )
        .unwrap();
    let shown = loaded.show_config();
    for secret in SECRET_TEXTS {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    assert!(shown.contains("auth_token = \"<redacted>\""), "{shown}");
    assert!(shown.contains("api_token = \"<redacted>\""), "{shown}");
    assert!(shown.contains("\"<redacted-1>\" = \"alice\""), "{shown}");
    assert!(shown.contains("\"<redacted-2>\" = \"bob\""), "{shown}");
    assert!(
        shown.contains(
            "cookie_secret = \"<redacted>\"  # from environment JUPYTERHUB_COOKIE_SECRET"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("postgresql://hub:<redacted>@db.internal:5432/jupyterhub"),
        "{shown}"
    );
    assert!(shown.contains(&format!("# Config file: {}", path.display())));
    // It is TOML.
    shown.parse::<toml::Table>().unwrap();
    // Nor does Debug show any secret.
    let debug = format!("{:?}", loaded.config);
    for secret in SECRET_TEXTS {
        assert!(!debug.contains(secret), "{secret} leaked through Debug");
    }
}

#[test]
fn show_config_output_cannot_be_used_as_config_by_mistake() {
    let fx = Fixture::new();
    let path = fx.write("secrets.toml", EVERY_SECRET);
    let loaded = fx.load(&["-f", path.to_str().unwrap()], &[]).unwrap();
    let err = HubConfig::from_toml_str(&loaded.show_config(), Path::new("shown.toml")).unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    for key in [
        "hub.db_url",
        "hub.crypt_key",
        "hub.api_tokens",
        "proxy.auth_token",
        "services[0].api_token",
    ] {
        assert!(keys.contains(&key), "{key} not refused: {err}");
    }
}

#[test]
fn show_config_is_the_effective_configuration() {
    let fx = Fixture::new();
    let path = fx.write(
        "c.toml",
        "[hub]\nbind_url = \"http://:8000/jh\"\nallow_named_servers = true\n\
         [spawner.environment]\nA = \"1\"\n[groups.staff]\nusers = [\"alice\"]\n\
         properties = { gpu = true }\n[[roles]]\nname = \"staff\"\nscopes = [\"read:users\"]\n\
         groups = [\"staff\"]\n",
    );
    let loaded = fx
        .load(
            &["-f", path.to_str().unwrap()],
            &[("JUPYTERHUB_HUB_HUB_PORT", "9000")],
        )
        .unwrap();
    let shown = loaded.show_config();
    assert!(shown.contains("hub_port = 9000  # from environment JUPYTERHUB_HUB_HUB_PORT"));
    assert!(shown.contains("auth_token = \"<redacted>\"  # generated at startup"));
    assert!(shown.contains("base_url = \"/jh/\""), "{shown}");
    assert!(shown.contains("# ip is unset"), "{shown}");
    // Apart from the redacted token, reading it back gives the same configuration.
    let mut table: toml::Table = shown.parse().unwrap();
    table["proxy"].as_table_mut().unwrap().remove("auth_token");
    let again = HubConfig::from_toml_str(&toml::to_string(&table).unwrap(), &path).unwrap();
    let mut expected = loaded.config.clone();
    expected.proxy.auth_token = None;
    assert_eq!(again, expected);
}

// === values filled in at load time ===

#[test]
fn a_proxy_token_is_generated_when_the_hub_starts_the_proxy() {
    let fx = Fixture::new();
    let a = fx.load(&[], &[]).unwrap();
    let b = fx.load(&[], &[]).unwrap();
    let token = a.config.proxy.auth_token().unwrap().expose().to_owned();
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(
        Some(token.as_str()),
        b.config.proxy.auth_token().map(Secret::expose)
    );
    assert_eq!(
        a.provenance.source_of("proxy.auth_token"),
        Source::Generated
    );
}

#[test]
fn an_external_proxy_needs_its_token() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[proxy]\nshould_start = false\n"));
    let text = only_problem(&err);
    assert!(text.starts_with("proxy.auth_token: is required when proxy.should_start is false"));
    assert!(text.contains("CONFIGPROXY_AUTH_TOKEN"), "{text}");
    assert!(text.ends_with(&format!("(from {})", fx.path("config.toml").display())));
    let loaded = fx
        .load(
            &["-f", fx.path("config.toml").to_str().unwrap()],
            &[("CONFIGPROXY_AUTH_TOKEN", "external-proxy-token")],
        )
        .unwrap();
    assert_eq!(
        loaded.config.proxy.auth_token().map(Secret::expose),
        Some("external-proxy-token")
    );
}

// === checks across keys ===

#[test]
fn bind_url_ip_port_and_base_url_combine() {
    let fx = Fixture::new();
    let c = fx
        .load_file("[hub]\nbind_url = \"http://:8000/jupyter\"\n")
        .unwrap()
        .config;
    assert_eq!(c.hub.base_url.as_str(), "/jupyter/");
    assert_eq!(c.hub.bind_url.as_str(), "http://0.0.0.0:8000/jupyter/");

    let c = fx
        .load_file("[hub]\nbind_url = \"http://127.0.0.1:8000\"\nip = \"::\"\nport = 80\nbase_url = \"/x/\"\n")
        .unwrap()
        .config;
    assert_eq!(c.hub.bind_url.as_str(), "http://[::]/x/");
    assert_eq!(c.hub.public_listen(), ("::".to_owned(), 80));
    assert_eq!(
        HubConfig::default().hub.public_listen(),
        ("0.0.0.0".to_owned(), 8000)
    );

    // JupyterHub's way of writing "all interfaces".
    let c = fx
        .load_file("[hub]\nip = \"\"\nhub_ip = \"\"\n")
        .unwrap()
        .config;
    assert_eq!(c.hub.public_listen().0, "0.0.0.0");
    assert_eq!(c.hub.hub_bind_addr().to_string(), "0.0.0.0:8081");

    let err = error_of(fx.load_file("[hub]\nbind_url = \"http://:8000/a/\"\nbase_url = \"/b/\"\n"));
    assert!(
        only_problem(&err).starts_with("hub.base_url: /b/ differs from the path of hub.bind_url")
    );
}

#[test]
fn tls_needs_key_and_certificate() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[hub]\nssl_key = \"/k.pem\"\n"));
    assert!(only_problem(&err).starts_with("hub.ssl_cert: is required when hub.ssl_key is set"));
    let c = fx
        .load_file("[hub]\nssl_key = \"/k.pem\"\nssl_cert = \"/c.pem\"\n")
        .unwrap()
        .config;
    assert_eq!(c.hub.bind_url.scheme(), "https");
    let err = error_of(fx.load_file("[hub]\nbind_url = \"https://:443\"\n"));
    assert!(only_problem(&err).contains("public_url"));
}

#[test]
fn hub_addresses() {
    let fx = Fixture::new();
    let c = fx
        .load_file("[hub]\nhub_bind_url = \"http://0.0.0.0:8082\"\nbase_url = \"/jh/\"\n")
        .unwrap()
        .config;
    assert_eq!(c.hub.hub_bind_addr().to_string(), "0.0.0.0:8082");
    assert_eq!(
        c.hub.hub_connect_url().as_str(),
        "http://127.0.0.1:8082/jh/hub/"
    );
    let c = fx
        .load_file("[hub]\nhub_connect_url = \"http://hub.internal:8081\"\n")
        .unwrap()
        .config;
    assert_eq!(
        c.hub.hub_connect_url().as_str(),
        "http://hub.internal:8081/hub/"
    );
    let err = error_of(fx.load_file("[hub]\nhub_bind_url = \"http://myhost:8081\"\n"));
    assert!(only_problem(&err).starts_with("hub.hub_bind_url: the host must be an IP address"));
}

#[test]
fn token_rules() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[hub.api_tokens]\n\"abc\" = \"alice\"\n"));
    let text = only_problem(&err);
    assert!(
        text.contains("for user \"alice\" is 3 characters long"),
        "{text}"
    );
    let long = "x".repeat(65);
    let err = error_of(fx.load_file(&format!(
        "[[services]]\nname = \"s\"\napi_token = \"{long}\"\n"
    )));
    assert!(only_problem(&err).starts_with("services[0].api_token: "));
    let err = error_of(fx.load_file(
        "[hub.api_tokens]\n\"shared-token-1\" = \"alice\"\n\
         [[services]]\nname = \"s\"\napi_token = \"shared-token-1\"\n",
    ));
    let text = only_problem(&err);
    assert!(
        text.starts_with(
            "services[0].api_token: the same token is already given to user \"alice\""
        ),
        "{text}"
    );
    assert!(!text.contains("shared-token-1"), "{text}");
}

#[test]
fn service_rules() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file(
        "[[services]]\nurl = \"http://a:1\"\n[[services]]\nname = \"x\"\n[[services]]\nname = \"x\"\n\
         [[services]]\nname = \"a/b\"\n[[services]]\nname = \"y\"\noauth_client_id = \"y\"\n",
    ));
    let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert_eq!(
        problems[0],
        format!(
            "services[0].name: is required (from {})",
            fx.path("config.toml").display()
        )
    );
    assert!(problems[1].starts_with("services[2].name: another service is also called \"x\""));
    assert!(problems[2].starts_with("services[3].name: \"a/b\""));
    assert!(
        problems[3].starts_with("services[4].oauth_client_id: \"y\" must start with `service-`")
    );
}

#[test]
fn role_rules() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file(
        "[[roles]]\nname = \"Bad Name\"\n[[roles]]\nname = \"admin\"\nscopes = [\"read:users\"]\n\
         [[roles]]\nname = \"ok-role\"\n[[roles]]\nname = \"ok-role\"\n",
    ));
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["roles[0].name", "roles[1].scopes", "roles[3].name"]);
    // Members may be added to admin.
    fx.load_file("[[roles]]\nname = \"admin\"\nusers = [\"root\"]\n")
        .unwrap();
}

#[test]
fn profile_rules() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file(
        "[[profiles]]\nslug = \"Big Box\"\n[[profiles]]\ndisplay_name = \"x\"\n\
         [[profiles]]\nslug = \"gpu\"\ndefault = true\n\
         [[profiles]]\nslug = \"gpu\"\ndefault = true\nenvironment = { \"A=B\" = \"1\" }\n\
         user_options = { profile = \"other\" }\n",
    ));
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "profiles[0].slug",
            "profiles[1].slug",
            "profiles[3].slug",
            "profiles[3].default",
            "profiles[3].user_options.profile",
            "profiles[3].environment.\"A=B\"",
        ]
    );
    let config = fx
        .load_file("[[profiles]]\nslug = \"small\"\n[[profiles]]\nslug = \"9-big_2\"\n")
        .unwrap()
        .config;
    assert_eq!(config.profiles[0].label(), "small");
    assert!(config.profiles[1].visible_to("anyone", &[]));
}

#[test]
fn shared_password_rules() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[authenticator]\nclass = \"shared-password\"\n"));
    assert!(only_problem(&err).starts_with(
        "authenticator.shared_password.global_password: is required with the shared-password"
    ));
    let err = error_of(fx.load_file(
        "[authenticator]\nclass = \"shared-password\"\n[authenticator.shared_password]\n\
         global_password = \"short\"\nadmin_password = \"also-short\"\n",
    ));
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "authenticator.shared_password.global_password",
            "authenticator.shared_password.admin_password"
        ]
    );
    let same = "s".repeat(40);
    let err = error_of(fx.load_file(&format!(
        "[authenticator]\nclass = \"shared-password\"\n[authenticator.shared_password]\n\
         global_password = \"{same}\"\nadmin_password = \"{same}\"\n"
    )));
    assert!(only_problem(&err).contains("must differ from global_password"));
}

#[test]
fn allow_defaults_follow_the_authenticator() {
    let fx = Fixture::new();
    let c = fx.load_file("").unwrap().config;
    assert!(!c.authenticator.allows_all());
    assert!(!c.authenticator.allows_existing_users());
    let c = fx
        .load_file("[authenticator]\nclass = \"dummy\"\n")
        .unwrap()
        .config;
    assert!(c.authenticator.allows_all());
    let c = fx
        .load_file("[authenticator]\nclass = \"dummy\"\nallowed_users = [\"a\"]\n")
        .unwrap()
        .config;
    assert!(!c.authenticator.allows_all());
    assert!(c.authenticator.allows_existing_users());
}

#[test]
fn limits_and_durations() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[hub]\napi_page_default_limit = 500\n"));
    assert!(
        only_problem(&err).starts_with(
            "hub.api_page_default_limit: 500 is more than hub.api_page_max_limit (200)"
        )
    );
    let err = error_of(fx.load_file("[spawner]\npoll_interval = 0\n"));
    assert!(only_problem(&err).starts_with("spawner.poll_interval: must be more than 0"));
    let c = fx
        .load_file("[hub]\ntoken_expires_in_max_seconds = 3600\nconcurrent_spawn_limit = 0\n")
        .unwrap()
        .config;
    assert_eq!(
        c.hub.token_expires_in_max_seconds.get(),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(c.hub.concurrent_spawn_limit, Limit::NONE);
}

#[test]
fn auth_state_needs_a_crypt_key() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[authenticator]\nenable_auth_state = true\n"));
    assert!(only_problem(&err).starts_with("hub.crypt_key: is required"));
    let path = fx.path("config.toml");
    fx.load(
        &["-f", path.to_str().unwrap()],
        &[("JUPYTERHUB_CRYPT_KEY", "k")],
    )
    .unwrap();
}

#[test]
fn custom_scopes_are_checked() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file(
        "[hub.custom_scopes.\"read:grades\"]\ndescription = \"x\"\n\
         [hub.custom_scopes.\"custom:a:b\"]\nsubscopes = [\"custom:nope\"]\n",
    ));
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "hub.custom_scopes.\"custom:a:b\".subscopes",
            "hub.custom_scopes.\"read:grades\""
        ]
    );
}

#[test]
fn problems_inside_tables_are_attributed_to_the_file() {
    let fx = Fixture::new();
    let err = error_of(fx.load_file("[spawner.environment]\n\"A=B\" = \"1\"\n"));
    assert_eq!(
        only_problem(&err),
        format!(
            "spawner.environment.\"A=B\": is not an environment variable name (empty, or holds \
             `=` or NUL) (from {})",
            fx.path("config.toml").display()
        )
    );
}

#[test]
fn notices_for_deprecated_and_ignored_settings() {
    let fx = Fixture::new();
    let loaded = fx
        .load_file(
            "[hub]\nadmin_access = true\nnamed_server_limit_per_user = 3\n\
             [authenticator]\nallowed_users = [\"a\"]\nblocked_users = [\"a\"]\n\
             [authenticator.dummy]\npassword = \"pw\"\n",
        )
        .unwrap();
    let all = loaded.notices.join("\n");
    for needle in [
        "admin_access is deprecated",
        "allow_named_servers is false",
        "blocked wins",
        "[authenticator.dummy] is ignored",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
}

#[test]
fn a_full_config_in_jupyterhub_terms_loads() {
    let fx = Fixture::new();
    let c = fx
        .load_file(
            r#"
[hub]
bind_url = "http://:8000"
base_url = "/jupyter/"
hub_ip = "0.0.0.0"
hub_connect_url = "http://hub:8081"
db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
allow_named_servers = true
named_server_limit_per_user = 2
concurrent_spawn_limit = 64
token_expires_in_max_seconds = 604800
template_paths = ["/srv/jupyterhub/templates"]
extra_user_scopes = ["read:groups:name"]

[proxy]
should_start = false
api_url = "http://proxy:8001"
auth_token = "a-long-proxy-token"

[authenticator]
class = "jupyterhub.auth.PAMAuthenticator"
admin_users = ["root"]
allowed_users = ["alice", "bob"]

[authenticator.pam]
admin_groups = ["wheel"]

[spawner]
cmd = ["jupyter-labhub"]
args = ["--allow-root"]
default_url = "/lab"
notebook_dir = "~"
start_timeout = 300
environment = { OMP_NUM_THREADS = "1" }

[[services]]
name = "idle-culler"
command = ["python3", "-m", "jupyterhub_idle_culler", "--timeout=3600"]

[[roles]]
name = "idle-culler"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["idle-culler"]

[groups.students]
users = ["alice"]
"#,
        )
        .unwrap()
        .config;
    assert_eq!(c.hub.base_url.as_str(), "/jupyter/");
    assert_eq!(
        c.hub.hub_connect_url().as_str(),
        "http://hub:8081/jupyter/hub/"
    );
    assert_eq!(c.authenticator.class, AuthenticatorClass::Pam);
    assert_eq!(c.spawner.default_url, Some(Location::Path("/lab".into())));
    assert_eq!(
        c.services[0].command.as_ref().map(Command::program),
        Some("python3")
    );
    assert_eq!(c.spawner.environment["OMP_NUM_THREADS"], "1");
}

// === the reference doc ===

fn reference_doc_path() -> PathBuf {
    // The package directory at run time, not at build time: the binary may come from a build
    // in another checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../docs/reference/hub-config.md")
}

#[test]
fn the_reference_doc_lists_every_key_and_variable() {
    let doc = reference_markdown();
    for path in all_leaf_paths() {
        let name = path.rsplit('.').next().unwrap();
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "{path} missing from the reference"
        );
    }
    for key in layers::env_keys() {
        for name in &key.names {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} missing from the reference"
            );
        }
    }
}

#[test]
fn the_reference_doc_is_current() {
    let on_disk = std::fs::read_to_string(reference_doc_path()).unwrap_or_default();
    assert!(
        on_disk == reference_markdown(),
        "docs/reference/hub-config.md is out of date; regenerate it with \
         `cargo test -p hub -- --ignored write_reference_doc`"
    );
}

#[test]
#[ignore = "writes docs/reference/hub-config.md; run after changing a key"]
fn write_reference_doc() {
    std::fs::write(reference_doc_path(), reference_markdown()).unwrap();
}

#[test]
fn the_server_command_default_depends_on_the_spawner() {
    let fx = Fixture::new();
    let c = fx.load_file("").unwrap().config;
    assert_eq!(c.spawner.cmd.argv(), ["singleuser-auth-shim"]);
    for class in ["slurm", "batch"] {
        let c = fx
            .load_file(&format!(
                "[spawner]\nclass = \"{class}\"\n[spawner.batch]\nsubmit = [\"x\"]\nstatus = \
                 [\"x\"]\ncancel = [\"x\"]\njob_id_pattern = \"x\"\nrunning_pattern = \"x\"\n\
                 pending_pattern = \"x\"\nhost_pattern = \"x\"\n"
            ))
            .unwrap()
            .config;
        assert_eq!(c.spawner.cmd.argv(), ["jupyterhub-singleuser"], "{class}");
    }
    let c = fx
        .load_file("[spawner]\nclass = \"slurm\"\ncmd = [\"singleuser-auth-shim\"]\n")
        .unwrap()
        .config;
    assert_eq!(c.spawner.cmd.argv(), ["singleuser-auth-shim"]);
}
