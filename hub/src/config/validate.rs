//! Checks that involve more than one key, and values derived from other keys.
//!
//! Single values are already checked by their types while decoding; what remains is what
//! JupyterHub checks across settings (bind URL against base URL, TLS key and certificate,
//! token lengths and uniqueness, role names, authenticator passwords). Derived values are
//! written back, so the rest of the hub and `--show-config` see the effective ones.

use std::collections::{BTreeMap, BTreeSet};

use super::HubConfig;
use super::error::Problem;
use super::layers::{Provenance, Source};
use super::schema::{index, join};
use super::sections::{
    AuthenticatorSection, GroupConfig, HubSection, ProfileConfig, ProxySection, RoleConfig,
    ServiceConfig, SpawnerSection, host_ip,
};
use super::values::{AuthenticatorClass, BaseUrl, Secret};

/// Length limits of tokens given in configuration: JupyterHub refuses shorter ones, and never
/// looks up longer ones.
const TOKEN_CHARS: std::ops::RangeInclusive<usize> = 8..=64;

pub(crate) fn validate(
    config: &mut HubConfig,
    provenance: &Provenance,
    problems: &mut Vec<Problem>,
    notices: &mut Vec<String>,
) {
    let mut check = Checker {
        provenance,
        problems,
        notices,
    };
    hub(&mut config.hub, &mut check);
    proxy(&config.proxy, &mut check);
    authenticator(&config.authenticator, &config.hub, &mut check);
    spawner(&mut config.spawner, &mut check);
    services(&config.services, &config.hub, &mut check);
    roles(&config.roles, &mut check);
    groups(&config.groups, &mut check);
    profiles(&config.profiles, &mut check);
}

struct Checker<'a> {
    provenance: &'a Provenance,
    problems: &'a mut Vec<Problem>,
    notices: &'a mut Vec<String>,
}

impl Checker<'_> {
    /// A problem with `key`, attributed to wherever `key` was set.
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problem_from(key, key, message);
    }

    /// A problem with `key` that comes from how `cause` was set (for a value that is missing
    /// because of another one).
    fn problem_from(&mut self, key: &str, cause: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_owned(),
            message: message.into(),
            source: self.provenance.source_of(cause),
        });
    }

    fn notice(&mut self, message: impl Into<String>) {
        self.notices.push(message.into());
    }

    fn is_set(&self, key: &str) -> bool {
        self.provenance.source_of(key) != Source::Default
    }

    fn positive(&mut self, key: &str, value: std::time::Duration) {
        if value.is_zero() {
            self.problem(key, "must be more than 0");
        }
    }

    fn token_length(&mut self, key: &str, token: &Secret, owner: &str) {
        let n = token.char_len();
        if !TOKEN_CHARS.contains(&n) {
            self.problem(
                key,
                format!("the token {owner} is {n} characters long; tokens must have 8 to 64"),
            );
        }
    }
}

fn hub(hub: &mut HubSection, check: &mut Checker<'_>) {
    // `ip` and `port` override the host and port of `bind_url`, as in JupyterHub.
    if let Some(ip) = hub.ip {
        let _ = hub.bind_url.url_mut().set_ip_host(ip);
    }
    if let Some(port) = hub.port {
        let _ = hub.bind_url.url_mut().set_port(Some(port.get()));
    }

    // A path in `bind_url` is the base URL unless `base_url` says otherwise.
    let bind_path = hub.bind_url.path().to_owned();
    if bind_path != "/" {
        match BaseUrl::parse(&bind_path) {
            Ok(from_bind) if !check.is_set("hub.base_url") => hub.base_url = from_bind,
            Ok(from_bind) if from_bind != hub.base_url => check.problem(
                "hub.base_url",
                format!(
                    "{} differs from the path of hub.bind_url ({bind_path}); set one of them",
                    hub.base_url
                ),
            ),
            Ok(_) => {}
            Err(why) => check.problem(
                "hub.bind_url",
                format!("its path {bind_path:?} cannot be a URL prefix: {why}"),
            ),
        }
    }
    let base = hub.base_url.as_str().to_owned();
    hub.bind_url.url_mut().set_path(&base);

    match (&hub.ssl_key, &hub.ssl_cert) {
        (Some(_), None) => check.problem_from(
            "hub.ssl_cert",
            "hub.ssl_key",
            "is required when hub.ssl_key is set",
        ),
        (None, Some(_)) => check.problem_from(
            "hub.ssl_key",
            "hub.ssl_cert",
            "is required when hub.ssl_cert is set",
        ),
        (Some(_), Some(_)) if hub.bind_url.scheme() == "http" => {
            if check.is_set("hub.bind_url") {
                check.problem(
                    "hub.bind_url",
                    "uses http:// but hub.ssl_cert is set; write https://",
                );
            } else {
                let _ = hub.bind_url.url_mut().set_scheme("https");
            }
        }
        (None, None) if hub.bind_url.scheme() == "https" => check.problem(
            "hub.bind_url",
            "uses https:// but hub.ssl_key and hub.ssl_cert are not set \
             (for TLS terminated in front of the proxy, set hub.public_url instead)",
        ),
        _ => {}
    }

    if let Some(url) = &hub.hub_bind_url
        && host_ip(url).is_none()
    {
        check.problem(
            "hub.hub_bind_url",
            "the host must be an IP address (the hub binds to it)",
        );
    }

    if hub.api_page_default_limit > hub.api_page_max_limit {
        check.problem(
            "hub.api_page_default_limit",
            format!(
                "{} is more than hub.api_page_max_limit ({})",
                hub.api_page_default_limit, hub.api_page_max_limit
            ),
        );
    }
    check.positive(
        "hub.cookie_max_age_days",
        hub.cookie_max_age_days.duration(),
    );
    check.positive("hub.last_activity_interval", hub.last_activity_interval);
    if let Some(lifetime) = hub.oauth_token_expires_in {
        check.positive("hub.oauth_token_expires_in", lifetime);
    }

    for (token, user) in hub.api_tokens.iter() {
        check.token_length("hub.api_tokens", token, &format!("for user {user:?}"));
        if user.trim().is_empty() {
            check.problem("hub.api_tokens", "a token has an empty username");
        }
    }

    for (name, scope) in &hub.custom_scopes {
        let key = join("hub.custom_scopes", name);
        if !is_custom_scope_name(name) {
            check.problem(
                &key,
                "a custom scope name is `custom:` then lowercase letters, digits and `_-*:` \
                 (at least 3, starting with a letter or digit)",
            );
        }
        for sub in &scope.subscopes {
            if !hub.custom_scopes.contains_key(sub) {
                check.problem(
                    &join(&key, "subscopes"),
                    format!("{sub:?} is not a custom scope defined in hub.custom_scopes"),
                );
            }
        }
    }

    if hub.admin_access {
        check.notice(
            "hub.admin_access is deprecated: give admins a role with the access:servers scope",
        );
    }
    if !hub.allow_named_servers && hub.named_server_limit_per_user.get().is_some() {
        check.notice(
            "hub.named_server_limit_per_user has no effect while hub.allow_named_servers is false",
        );
    }
}

/// JupyterHub's `^custom:[a-z0-9][a-z0-9_\-\*:]+[a-z0-9_\*]$`.
fn is_custom_scope_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("custom:") else {
        return false;
    };
    let bytes = rest.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let lower_digit = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.len() >= 3
        && lower_digit(*first)
        && (lower_digit(*last) || matches!(last, b'_' | b'*'))
        && bytes[1..bytes.len() - 1]
            .iter()
            .all(|b| lower_digit(*b) || matches!(b, b'_' | b'-' | b'*' | b':'))
}

fn proxy(proxy: &ProxySection, check: &mut Checker<'_>) {
    check.positive("proxy.check_running_interval", proxy.check_running_interval);
    if !proxy.should_start && proxy.auth_token.is_none() {
        check.problem_from(
            "proxy.auth_token",
            "proxy.should_start",
            "is required when proxy.should_start is false, to talk to a proxy the hub did not \
             start (set it here or in CONFIGPROXY_AUTH_TOKEN)",
        );
    }
}

fn authenticator(auth: &AuthenticatorSection, hub: &HubSection, check: &mut Checker<'_>) {
    for user in auth.allowed_users.intersection(&auth.blocked_users) {
        check.notice(format!(
            "{user:?} is in both authenticator.allowed_users and authenticator.blocked_users; \
             blocked wins"
        ));
    }
    for user in auth.admin_users.intersection(&auth.blocked_users) {
        check.notice(format!(
            "{user:?} is in both authenticator.admin_users and authenticator.blocked_users; \
             blocked wins"
        ));
    }
    for (from, to) in &auth.username_map {
        if to.trim().is_empty() {
            check.problem(
                &join("authenticator.username_map", from),
                "maps to an empty username",
            );
        }
    }
    if auth.enable_auth_state && hub.crypt_key.is_none() {
        check.problem_from(
            "hub.crypt_key",
            "authenticator.enable_auth_state",
            "is required when authenticator.enable_auth_state is true \
             (set JUPYTERHUB_CRYPT_KEY)",
        );
    }

    let shared = &auth.shared_password;
    match auth.class {
        AuthenticatorClass::SharedPassword => {
            match &shared.global_password {
                None => check.problem_from(
                    "authenticator.shared_password.global_password",
                    "authenticator.class",
                    "is required with the shared-password authenticator",
                ),
                Some(p) if p.char_len() < 8 => check.problem(
                    "authenticator.shared_password.global_password",
                    "must be at least 8 characters",
                ),
                Some(_) => {}
            }
            if let Some(admin) = &shared.admin_password {
                if admin.char_len() < 32 {
                    check.problem(
                        "authenticator.shared_password.admin_password",
                        "must be at least 32 characters",
                    );
                }
                if Some(admin) == shared.global_password.as_ref() {
                    check.problem(
                        "authenticator.shared_password.admin_password",
                        "must differ from global_password",
                    );
                }
                if auth.admin_users.is_empty() {
                    check.notice(
                        "authenticator.shared_password.admin_password is set but \
                         authenticator.admin_users is empty, so nobody can use it",
                    );
                }
            }
        }
        AuthenticatorClass::Dummy => check.notice(
            "the dummy authenticator lets anyone log in as anyone; use it only for testing",
        ),
        AuthenticatorClass::Pam => {}
    }
    if auth.class != AuthenticatorClass::SharedPassword
        && (shared.global_password.is_some() || shared.admin_password.is_some())
    {
        check.notice(format!(
            "[authenticator.shared_password] is ignored: the authenticator is {}",
            auth.class
        ));
    }
    if auth.class != AuthenticatorClass::Dummy && auth.dummy.password.is_some() {
        check.notice(format!(
            "[authenticator.dummy] is ignored: the authenticator is {}",
            auth.class
        ));
    }
}

fn spawner(spawner: &mut SpawnerSection, check: &mut Checker<'_>) {
    // The batch spawners' wrapper runs the command as a Python script.
    if spawner.class != super::values::SpawnerClass::Local && !check.is_set("spawner.cmd") {
        spawner.cmd = super::values::Command::new(super::sections::DEFAULT_BATCH_SERVER_CMD, []);
    }
    check.positive("spawner.start_timeout", spawner.start_timeout);
    check.positive("spawner.http_timeout", spawner.http_timeout);
    check.positive("spawner.poll_interval", spawner.poll_interval);
    env_names(check, "spawner.environment", spawner.environment.keys());
    for (i, name) in spawner.env_keep.iter().enumerate() {
        if !is_env_name(name) {
            check.problem(
                &index("spawner.env_keep", i),
                format!("{name:?} is not an environment variable name"),
            );
        }
    }
}

fn env_names<'a>(check: &mut Checker<'_>, key: &str, names: impl Iterator<Item = &'a String>) {
    for name in names {
        if !is_env_name(name) {
            check.problem(
                &join(key, name),
                "is not an environment variable name (empty, or holds `=` or NUL)",
            );
        }
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

fn services(services: &[ServiceConfig], hub: &HubSection, check: &mut Checker<'_>) {
    let mut names = BTreeSet::new();
    // Tokens already given to someone, for the uniqueness check: token → owner.
    let mut tokens: BTreeMap<&str, String> = hub
        .api_tokens
        .iter()
        .map(|(t, user)| (t.expose(), format!("user {user:?} in hub.api_tokens")))
        .collect();
    for (i, service) in services.iter().enumerate() {
        let at = index("services", i);
        let name = service.name.as_str();
        if name.is_empty() {
            check.problem(&join(&at, "name"), "is required");
        } else if name.contains('/') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            check.problem(
                &join(&at, "name"),
                format!("{name:?}: a service name cannot hold `/` or spaces (it is part of a URL)"),
            );
        } else if !names.insert(name) {
            check.problem(
                &join(&at, "name"),
                format!("another service is also called {name:?}"),
            );
        }
        if let Some(token) = &service.api_token {
            let key = join(&at, "api_token");
            check.token_length(&key, token, &format!("of service {name:?}"));
            let owner = format!("service {name:?}");
            if let Some(other) = tokens.insert(token.expose(), owner) {
                check.problem(&key, format!("the same token is already given to {other}"));
            }
        }
        if let Some(id) = &service.oauth_client_id
            && !id.starts_with("service-")
        {
            check.problem(
                &join(&at, "oauth_client_id"),
                format!("{id:?} must start with `service-`"),
            );
        }
        if service.command.is_none()
            && (!service.environment.is_empty() || service.cwd.is_some() || service.user.is_some())
        {
            check.notice(format!(
                "service {name:?}: environment, cwd and user apply only to services the hub \
                 starts, and it has no command"
            ));
        }
        env_names(check, &join(&at, "environment"), service.environment.keys());
        if service.admin {
            check.notice(format!(
                "service {name:?}: `admin = true` is deprecated; give the service a role"
            ));
        }
    }
}

fn roles(roles: &[RoleConfig], check: &mut Checker<'_>) {
    let mut names = BTreeSet::new();
    for (i, role) in roles.iter().enumerate() {
        let at = index("roles", i);
        let name = role.name.as_str();
        if name.is_empty() {
            check.problem(&join(&at, "name"), "is required");
        } else if !is_role_name(name) {
            check.problem(
                &join(&at, "name"),
                format!(
                    "{name:?}: a role name has 3 to 255 lowercase letters, digits and `-_.~`, \
                     starts with a letter and ends with a letter or digit"
                ),
            );
        } else if !names.insert(name) {
            check.problem(
                &join(&at, "name"),
                format!("another role is also called {name:?}"),
            );
        }
        if name == "admin" && !role.scopes.is_empty() {
            check.problem(
                &join(&at, "scopes"),
                "the admin role's scopes cannot be changed; only give it members",
            );
        }
        for (j, scope) in role.scopes.iter().enumerate() {
            if scope.trim().is_empty() || scope.contains(char::is_whitespace) {
                check.problem(
                    &index(&join(&at, "scopes"), j),
                    format!("{scope:?} is not a scope"),
                );
            }
        }
    }
}

/// JupyterHub's `^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$`.
fn is_role_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    (3..=255).contains(&bytes.len())
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'~' | b'.')
        })
}

fn groups(groups: &BTreeMap<String, GroupConfig>, check: &mut Checker<'_>) {
    for (name, group) in groups {
        let at = join("groups", name);
        if name.trim().is_empty() {
            check.problem(&at, "a group needs a name");
        }
        for (i, user) in group.users.iter().enumerate() {
            if user.trim().is_empty() {
                check.problem(&index(&join(&at, "users"), i), "is an empty username");
            }
        }
    }
}

/// A profile slug: 1 to 63 lowercase letters, digits, `-` and `_`, not starting with `-` or `_`.
fn is_profile_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    (1..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

fn profiles(profiles: &[ProfileConfig], check: &mut Checker<'_>) {
    let mut slugs = BTreeSet::new();
    let mut default: Option<&str> = None;
    for (i, profile) in profiles.iter().enumerate() {
        let at = index("profiles", i);
        let slug = profile.slug.as_str();
        if slug.is_empty() {
            check.problem(&join(&at, "slug"), "is required");
        } else if !is_profile_slug(slug) {
            check.problem(
                &join(&at, "slug"),
                format!(
                    "{slug:?}: a profile slug has 1 to 63 lowercase letters, digits, `-` and `_`, \
                     and starts with a letter or digit"
                ),
            );
        } else if !slugs.insert(slug) {
            check.problem(
                &join(&at, "slug"),
                format!("another profile is also called {slug:?}"),
            );
        }
        if profile.default {
            match default {
                Some(other) => check.problem(
                    &join(&at, "default"),
                    format!("profile {other:?} is already the default; only one can be"),
                ),
                None => default = Some(slug),
            }
        }
        if profile.user_options.contains_key("profile") {
            check.problem(
                &join(&join(&at, "user_options"), "profile"),
                "is set by the hub to the profile's slug",
            );
        }
        env_names(check, &join(&at, "environment"), profile.environment.keys());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_slugs() {
        for good in ["a", "gpu", "cpu-2", "x_1", "9"] {
            assert!(is_profile_slug(good), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-a", "_a", "A", "a b", "a/b", "é", long.as_str()] {
            assert!(!is_profile_slug(bad), "{bad}");
        }
    }

    #[test]
    fn role_names() {
        for ok in ["user", "gpu-users", "a.b~c_d", "r2d"] {
            assert!(is_role_name(ok), "{ok}");
        }
        for bad in ["ab", "Admins", "1role", "role-", "has space", ""] {
            assert!(!is_role_name(bad), "{bad}");
        }
    }

    #[test]
    fn custom_scope_names() {
        for ok in ["custom:read:notes", "custom:a_*", "custom:x-y"] {
            assert!(is_custom_scope_name(ok), "{ok}");
        }
        for bad in [
            "read:notes",
            "custom:",
            "custom:ab-",
            "custom:Up",
            "custom:-ab",
        ] {
            assert!(!is_custom_scope_name(bad), "{bad}");
        }
    }
}
