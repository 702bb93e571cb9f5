//! Server profiles (`[[profiles]]`): named sets of spawner options and environment variables,
//! offered on the spawn page to the users (and groups) each is meant for, and applied by the
//! hub at every start, whatever the spawner.
//!
//! A start's saved user options keep only what the user chose (`{"profile": "gpu", ...}`);
//! the profile's own options and environment are laid over them when the server starts, so a
//! changed profile applies from the next start and users cannot override what it sets.

use std::collections::BTreeMap;

use hub_plugin::SpawnError;
use serde_json::{Map, Value};

use crate::config::{HubConfig, ProfileConfig};
use crate::state::AppState;

/// The user option that names the chosen profile.
pub const PROFILE_OPTION: &str = "profile";

/// Why a start cannot use the profile it asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The profile does not exist, or the user may not use it.
    #[error("There is no server profile {0:?} you can use.")]
    Unknown(String),
    /// `profile` is not a string.
    #[error("The profile option must be the slug of a profile.")]
    NotAString,
    /// Profiles are configured but none is for this user.
    #[error("No server profile is available to you; ask an administrator.")]
    NoneAvailable,
}

impl ProfileError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            ProfileError::NoneAvailable => 403,
            ProfileError::Unknown(_) | ProfileError::NotAString => 400,
        }
    }
}

/// The profiles `user`, a member of `groups`, may use, in configuration order.
pub fn visible<'a>(config: &'a HubConfig, user: &str, groups: &[String]) -> Vec<&'a ProfileConfig> {
    config
        .profiles
        .iter()
        .filter(|p| p.visible_to(user, groups))
        .collect()
}

/// The profile used when none is chosen: the one marked `default`, else the first.
pub fn default_of<'a>(visible: &[&'a ProfileConfig]) -> Option<&'a ProfileConfig> {
    visible
        .iter()
        .find(|p| p.default)
        .or_else(|| visible.first())
        .copied()
}

/// The profile a start with `options` uses: `None` when no profiles are configured.
///
/// # Errors
/// When the options name a profile the user may not use, or none is available to them.
pub fn resolve<'a>(
    config: &'a HubConfig,
    user: &str,
    groups: &[String],
    options: &Map<String, Value>,
) -> Result<Option<&'a ProfileConfig>, ProfileError> {
    if config.profiles.is_empty() {
        return Ok(None);
    }
    let visible = visible(config, user, groups);
    match options.get(PROFILE_OPTION) {
        None | Some(Value::Null) => default_of(&visible)
            .map(Some)
            .ok_or(ProfileError::NoneAvailable),
        Some(Value::String(slug)) if slug.is_empty() => default_of(&visible)
            .map(Some)
            .ok_or(ProfileError::NoneAvailable),
        Some(Value::String(slug)) => visible
            .iter()
            .find(|p| p.slug == *slug)
            .copied()
            .map(Some)
            .ok_or_else(|| ProfileError::Unknown(slug.chars().take(100).collect())),
        Some(_) => Err(ProfileError::NotAString),
    }
}

/// The options and extra environment of a start with `profile`: the user's `options` with the
/// profile's options laid over them and `profile` set to its slug.
pub fn apply(
    profile: &ProfileConfig,
    mut options: Map<String, Value>,
) -> (Map<String, Value>, BTreeMap<String, String>) {
    for (key, value) in &profile.user_options {
        options.insert(key.clone(), value.clone());
    }
    options.insert(
        PROFILE_OPTION.to_owned(),
        Value::String(profile.slug.clone()),
    );
    (options, profile.environment.clone())
}

/// The command of the profile a start's (already profile-applied) `options` name: `None`
/// without profiles, or when the profile sets none.
pub fn command_of(config: &HubConfig, options: &Map<String, Value>) -> Option<Vec<String>> {
    let slug = options.get(PROFILE_OPTION)?.as_str()?;
    let profile = config.profiles.iter().find(|p| p.slug == slug)?;
    profile.cmd.as_ref().map(|cmd| cmd.argv().to_vec())
}

/// The spawner's `validate_options` of `options`. With profiles configured, the hub's own
/// `profile` option is set aside first (spawners do not know it, and some refuse options they
/// do not know) and put back after.
///
/// # Errors
/// The spawner's refusal.
pub fn spawner_validate(
    state: &AppState,
    mut options: Map<String, Value>,
) -> Result<Value, SpawnError> {
    let profile = if state.config.profiles.is_empty() {
        None
    } else {
        options.remove(PROFILE_OPTION)
    };
    let validated = state.spawner.validate_options(Value::Object(options))?;
    Ok(match (validated, profile) {
        (Value::Object(mut map), Some(profile)) => {
            map.insert(PROFILE_OPTION.to_owned(), profile);
            Value::Object(map)
        }
        (Value::Null, Some(profile)) => {
            let mut map = Map::new();
            map.insert(PROFILE_OPTION.to_owned(), profile);
            Value::Object(map)
        }
        (other, _) => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> HubConfig {
        HubConfig::from_toml_str(
            r#"
[[profiles]]
slug = "small"
user_options = { cpu_limit = 1 }

[[profiles]]
slug = "gpu"
groups = ["ml"]
default = true
environment = { GPU = "1" }
user_options = { image = "gpu-image", cpu_limit = 4 }

[[profiles]]
slug = "secret"
users = ["carol"]
"#,
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn visibility_and_defaults() {
        let c = config();
        let slugs = |user: &str, groups: &[&str]| -> Vec<String> {
            let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            visible(&c, user, &groups)
                .iter()
                .map(|p| p.slug.clone())
                .collect()
        };
        assert_eq!(slugs("alice", &[]), ["small"]);
        assert_eq!(slugs("bob", &["ml"]), ["small", "gpu"]);
        assert_eq!(slugs("carol", &[]), ["small", "secret"]);
        let ml = ["ml".to_owned()];
        // The marked default, when visible; else the first.
        let p = resolve(&c, "bob", &ml, &Map::new()).unwrap().unwrap();
        assert_eq!(p.slug, "gpu");
        let p = resolve(&c, "alice", &[], &Map::new()).unwrap().unwrap();
        assert_eq!(p.slug, "small");
        let p = resolve(&c, "alice", &[], &opts(json!({"profile": ""})))
            .unwrap()
            .unwrap();
        assert_eq!(p.slug, "small");
    }

    #[test]
    fn refusals() {
        let c = config();
        assert_eq!(
            resolve(&c, "alice", &[], &opts(json!({"profile": "gpu"}))).unwrap_err(),
            ProfileError::Unknown("gpu".into())
        );
        assert_eq!(
            resolve(&c, "alice", &[], &opts(json!({"profile": 3}))).unwrap_err(),
            ProfileError::NotAString
        );
        let only_ml = HubConfig::from_toml_str(
            "[[profiles]]\nslug = \"gpu\"\ngroups = [\"ml\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let e = resolve(&only_ml, "alice", &[], &Map::new()).unwrap_err();
        assert_eq!(e, ProfileError::NoneAvailable);
        assert_eq!(e.status(), 403);
        assert_eq!(
            resolve(
                &HubConfig::default(),
                "a",
                &[],
                &opts(json!({"profile": "x"}))
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn the_profile_wins_over_the_user() {
        let c = config();
        let ml = ["ml".to_owned()];
        let chosen = opts(json!({"profile": "gpu", "cpu_limit": 64, "extra": "kept"}));
        let p = resolve(&c, "bob", &ml, &chosen).unwrap().unwrap();
        let (options, env) = apply(p, chosen);
        assert_eq!(
            Value::Object(options),
            json!({"profile": "gpu", "cpu_limit": 4, "extra": "kept", "image": "gpu-image"})
        );
        assert_eq!(env.get("GPU").map(String::as_str), Some("1"));
    }
}
