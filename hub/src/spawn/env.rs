//! The environment a single-user server gets (hub-protocol §6.1): everything it needs to find
//! the hub, authenticate to it and serve under its prefix. The hub passes no command-line
//! arguments of its own; spawners add only what they alone know (the port they picked).

use std::collections::BTreeMap;

use hub_api::env as names;

use crate::api::models::url_name;
use crate::config::HubConfig;
use crate::rbac::grants::server_oauth_access_scopes;

/// The facts of one spawn that go into the environment.
#[derive(Debug, Clone, Copy)]
pub struct ServerFacts<'a> {
    /// The owner.
    pub user: &'a str,
    /// The server name, `""` for the default server.
    pub server: &'a str,
    /// The server's URL prefix, e.g. `/user/alice/`.
    pub prefix: &'a str,
    /// The server's API token.
    pub token: &'a str,
    /// The server's OAuth client id.
    pub client_id: &'a str,
}

/// A list of strings as Python's `json.dumps` writes it (`["a", "b"]`): some single-user
/// servers compare these values as text.
pub fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|s| serde_json::Value::String(s.as_ref().to_owned()).to_string())
        .collect();
    format!("[{}]", parts.join(", "))
}

/// `{username}` and `{servername}` replaced, as in `notebook_dir` and `default_url`.
fn format_for(template: &str, facts: &ServerFacts<'_>) -> String {
    template
        .replace("{username}", facts.user)
        .replace("{servername}", facts.server)
}

/// The environment of a server. `hub_env` reads the hub's own environment (for `env_keep`).
pub fn server_env(
    config: &HubConfig,
    facts: &ServerFacts<'_>,
    hub_env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for key in &config.spawner.env_keep {
        if let Some(value) = hub_env(key) {
            env.insert(key.clone(), value);
        }
    }
    let hub = &config.hub;
    let api_url = format!("{}api", hub.hub_connect_url());
    let access_scopes = json_list(&server_oauth_access_scopes(facts.user, facts.server));
    let (public_host, public_url, public_hub_url) = match &hub.public_url {
        Some(public) => {
            let origin = public.as_url().origin().ascii_serialization();
            (
                origin.clone(),
                format!("{origin}{}", facts.prefix),
                format!("{origin}{}", hub.hub_prefix()),
            )
        }
        None => (String::new(), String::new(), String::new()),
    };
    let scheme = "http";
    let ip = match config.spawner.ip {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let service_url = format!("{scheme}://{ip}:{}{}", config.spawner.port, facts.prefix);
    let set = |env: &mut BTreeMap<String, String>, k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set(&mut env, names::API_TOKEN, facts.token.to_owned());
    set(&mut env, "JPY_API_TOKEN", facts.token.to_owned());
    set(&mut env, names::CLIENT_ID, facts.client_id.to_owned());
    set(&mut env, names::HOST, public_host);
    set(
        &mut env,
        names::OAUTH_CALLBACK_URL,
        format!("{}oauth_callback", facts.prefix),
    );
    set(&mut env, "JUPYTERHUB_OAUTH_SCOPES", access_scopes.clone());
    set(&mut env, names::OAUTH_ACCESS_SCOPES, access_scopes);
    set(
        &mut env,
        names::OAUTH_CLIENT_ALLOWED_SCOPES,
        json_list(&config.spawner.oauth_client_allowed_scopes),
    );
    set(&mut env, names::USER, facts.user.to_owned());
    set(&mut env, names::SERVER_NAME, facts.server.to_owned());
    set(
        &mut env,
        names::ACTIVITY_URL,
        format!("{api_url}/users/{}/activity", url_name(facts.user)),
    );
    set(&mut env, names::API_URL, api_url);
    set(&mut env, names::BASE_URL, hub.base_url.as_str().to_owned());
    set(&mut env, names::SERVICE_PREFIX, facts.prefix.to_owned());
    set(&mut env, names::SERVICE_URL, service_url);
    set(&mut env, "JUPYTERHUB_PUBLIC_URL", public_url);
    set(&mut env, "JUPYTERHUB_PUBLIC_HUB_URL", public_hub_url);
    set(
        &mut env,
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED",
        "0".to_owned(),
    );
    if hub.admin_access {
        set(&mut env, names::ADMIN_ACCESS, "1".to_owned());
    }
    if let Some(dir) = &config.spawner.notebook_dir {
        set(&mut env, "JUPYTERHUB_ROOT_DIR", format_for(dir, facts));
    }
    if let Some(url) = &config.spawner.default_url {
        set(
            &mut env,
            names::DEFAULT_URL,
            format_for(&url.to_string(), facts),
        );
    }
    if config.spawner.debug {
        set(&mut env, names::DEBUG, "1".to_owned());
    }
    if config.spawner.disable_user_config {
        set(&mut env, "JUPYTERHUB_DISABLE_USER_CONFIG", "1".to_owned());
    }
    for (k, v) in &config.spawner.environment {
        env.insert(k.clone(), format_for(v, facts));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(user: &'a str, server: &'a str, prefix: &'a str) -> ServerFacts<'a> {
        ServerFacts {
            user,
            server,
            prefix,
            token: "0123456789abcdef0123456789abcdef",
            client_id: "jupyterhub-user-alice",
        }
    }

    #[test]
    fn default_server_environment() {
        let config = HubConfig::default();
        let hub_env = |k: &str| (k == "PATH").then(|| "/usr/bin".to_owned());
        let env = server_env(&config, &facts("alice", "", "/user/alice/"), &hub_env);
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("JUPYTERHUB_API_TOKEN"), get("JPY_API_TOKEN"));
        assert_eq!(
            get("JUPYTERHUB_API_URL"),
            Some("http://127.0.0.1:8081/hub/api")
        );
        assert_eq!(
            get("JUPYTERHUB_ACTIVITY_URL"),
            Some("http://127.0.0.1:8081/hub/api/users/alice/activity")
        );
        assert_eq!(
            get("JUPYTERHUB_OAUTH_ACCESS_SCOPES"),
            Some(r#"["access:servers!server=alice/", "access:servers!user=alice"]"#)
        );
        assert_eq!(
            get("JUPYTERHUB_OAUTH_SCOPES"),
            get("JUPYTERHUB_OAUTH_ACCESS_SCOPES")
        );
        assert_eq!(get("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES"), Some("[]"));
        assert_eq!(
            get("JUPYTERHUB_OAUTH_CALLBACK_URL"),
            Some("/user/alice/oauth_callback")
        );
        assert_eq!(get("JUPYTERHUB_SERVER_NAME"), Some(""));
        assert_eq!(get("JUPYTERHUB_BASE_URL"), Some("/"));
        assert_eq!(get("JUPYTERHUB_SERVICE_PREFIX"), Some("/user/alice/"));
        assert_eq!(
            get("JUPYTERHUB_SERVICE_URL"),
            Some("http://127.0.0.1:0/user/alice/")
        );
        assert_eq!(get("JUPYTERHUB_HOST"), Some(""));
        assert_eq!(get("JUPYTERHUB_PUBLIC_URL"), Some(""));
        assert_eq!(get("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED"), Some("0"));
        assert_eq!(get("PATH"), Some("/usr/bin"));
        assert_eq!(get("LANG"), None);
        assert_eq!(get("JUPYTERHUB_ADMIN_ACCESS"), None);
    }

    #[test]
    fn named_server_and_configured_values() {
        let mut config = HubConfig::default();
        config
            .spawner
            .environment
            .insert("FOO".into(), "bar-{username}".into());
        config
            .spawner
            .environment
            .insert("JUPYTERHUB_USER".into(), "override".into());
        config.spawner.notebook_dir = Some("~/{username}/{servername}".into());
        config.spawner.debug = true;
        config.spawner.oauth_client_allowed_scopes = vec!["read:users".into()];
        let env = server_env(
            &config,
            &facts("carol", "gpu2", "/user/carol/gpu2/"),
            &|_| None,
        );
        assert_eq!(env["FOO"], "bar-carol");
        assert_eq!(env["JUPYTERHUB_USER"], "override");
        assert_eq!(env["JUPYTERHUB_ROOT_DIR"], "~/carol/gpu2");
        assert_eq!(env["JUPYTERHUB_DEBUG"], "1");
        assert_eq!(env["JUPYTERHUB_SERVER_NAME"], "gpu2");
        assert_eq!(
            env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"],
            r#"["access:servers!server=carol/gpu2", "access:servers!user=carol"]"#
        );
        assert_eq!(
            env["JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES"],
            r#"["read:users"]"#
        );
        assert_eq!(
            env["JUPYTERHUB_ACTIVITY_URL"],
            "http://127.0.0.1:8081/hub/api/users/carol/activity"
        );
    }
}
