//! Every scope JupyterHub 6.1.1 defines, deployment-defined `custom:` scopes, parsing of
//! `scope!filter=value` strings, and expansion of raw scopes into a [`ScopeSet`].
//!
//! Mirrors `scopes.py`: `scope_definitions`, `define_custom_scopes`, `_check_scopes_exist`,
//! `_expand_scope` and `expand_scopes`. Error texts match JupyterHub's where clients or
//! operators see them (e.g. `Scope 'x' for token does not exist`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use crate::rbac::roles::self_scopes;
use crate::rbac::scope_set::ScopeSet;

/// A scope JupyterHub defines: its name, description and *direct* subscopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinScope {
    /// The scope name, e.g. `read:users`.
    pub name: &'static str,
    /// What the scope allows, as shown on the OAuth authorization page.
    pub description: &'static str,
    /// Scopes this one implies directly (expansion follows them transitively).
    pub subscopes: &'static [&'static str],
}

const fn scope(
    name: &'static str,
    description: &'static str,
    subscopes: &'static [&'static str],
) -> BuiltinScope {
    BuiltinScope {
        name,
        description,
        subscopes,
    }
}

/// The scopes of JupyterHub 6.1.1, in its own order. Descriptions are the ones published in the
/// REST API specification.
pub const BUILTIN_SCOPES: &[BuiltinScope] = &[
    scope(
        "(no_scope)",
        "Identify the owner of the requesting entity.",
        &[],
    ),
    scope("self", "Your own resources", &[]),
    scope("inherit", "Anything you have access to", &[]),
    scope("admin-ui", "Access the admin page.", &[]),
    scope(
        "admin:users",
        "Read, modify, create, and delete users and their authentication state, not including \
         their servers or tokens. This is an extremely privileged scope and should be considered \
         tantamount to superuser.",
        &[
            "admin:auth_state",
            "users",
            "read:roles:users",
            "delete:users",
        ],
    ),
    scope(
        "admin:auth_state",
        "Read a user\u{2019}s authentication state.",
        &[],
    ),
    scope(
        "users",
        "Read and write permissions to user models (excluding servers, tokens and authentication \
         state).",
        &["read:users", "list:users", "users:activity"],
    ),
    scope("delete:users", "Delete users.", &[]),
    scope(
        "list:users",
        "List users, including at least their names.",
        &["read:users:name"],
    ),
    scope(
        "read:users",
        "Read user models (including the URL of the default server if it is running).",
        &[
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
        ],
    ),
    scope("read:users:name", "Read names of users.", &[]),
    scope(
        "read:users:groups",
        "Read users\u{2019} group membership.",
        &[],
    ),
    scope(
        "read:users:activity",
        "Read time of last user activity.",
        &[],
    ),
    scope(
        "read:roles",
        "Read role assignments.",
        &[
            "read:roles:users",
            "read:roles:services",
            "read:roles:groups",
        ],
    ),
    scope("read:roles:users", "Read user role assignments.", &[]),
    scope("read:roles:services", "Read service role assignments.", &[]),
    scope("read:roles:groups", "Read group role assignments.", &[]),
    scope(
        "users:activity",
        "Update time of last user activity.",
        &["read:users:activity"],
    ),
    scope(
        "admin:servers",
        "Read, start, stop, create and delete user servers and their state.",
        &["admin:server_state", "servers"],
    ),
    scope(
        "admin:server_state",
        "Read and write users\u{2019} server state.",
        &[],
    ),
    scope(
        "servers",
        "Start and stop user servers.",
        &["read:servers", "start:servers", "delete:servers"],
    ),
    scope(
        "read:servers",
        "Read users\u{2019} names and their server models (excluding the server state).",
        &["read:users:name"],
    ),
    scope(
        "start:servers",
        "Start and edit users' servers. (added in JupyterHub 6)",
        &[],
    ),
    scope("delete:servers", "Stop and delete users' servers.", &[]),
    scope(
        "tokens",
        "Read, write, create and delete user tokens.",
        &["read:tokens"],
    ),
    scope("read:tokens", "Read user tokens.", &[]),
    scope(
        "admin:groups",
        "Read and write group information, create and delete groups.",
        &["groups", "read:roles:groups", "delete:groups"],
    ),
    scope(
        "groups",
        "Read and write group information, including adding/removing any users to/from groups. \
         Note: adding users to groups may affect permissions.",
        &["read:groups", "list:groups"],
    ),
    scope(
        "list:groups",
        "List groups, including at least their names.",
        &["read:groups:name"],
    ),
    scope("read:groups", "Read group models.", &["read:groups:name"]),
    scope("read:groups:name", "Read group names.", &[]),
    scope("delete:groups", "Delete groups.", &[]),
    scope(
        "admin:services",
        "Create, read, update, delete services, not including services defined from config files.",
        &["list:services", "read:services", "read:roles:services"],
    ),
    scope(
        "list:services",
        "List services, including at least their names.",
        &["read:services:name"],
    ),
    scope(
        "read:services",
        "Read service models.",
        &["read:services:name"],
    ),
    scope("read:services:name", "Read service names.", &[]),
    scope("read:hub", "Read detailed information about the Hub.", &[]),
    scope(
        "access:servers",
        "Access user servers via API or browser.",
        &[],
    ),
    scope(
        "access:services",
        "Access services via API or browser.",
        &[],
    ),
    scope(
        "users:shares",
        "Read and revoke a user's access to shared servers.",
        &["read:users:shares"],
    ),
    scope("read:users:shares", "Read servers shared with a user.", &[]),
    scope(
        "groups:shares",
        "Read and revoke a group's access to shared servers.",
        &["read:groups:shares"],
    ),
    scope(
        "read:groups:shares",
        "Read servers shared with a group.",
        &[],
    ),
    scope(
        "read:shares",
        "Read information about shared access to servers.",
        &[],
    ),
    scope(
        "shares",
        "Manage access to shared servers.",
        &[
            "access:servers",
            "read:shares",
            "users:shares",
            "groups:shares",
        ],
    ),
    scope(
        "proxy",
        "Read information about the proxy\u{2019}s routing table, sync the Hub with the proxy and \
         notify the Hub about a new proxy.",
        &[],
    ),
    scope("shutdown", "Shutdown the hub.", &[]),
    scope("read:metrics", "Read prometheus metrics.", &[]),
];

/// Looks up a built-in scope by name.
pub fn builtin(name: &str) -> Option<&'static BuiltinScope> {
    BUILTIN_SCOPES.iter().find(|s| s.name == name)
}

// === filters ===

/// The kind of resource a filter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilterKind {
    /// `!user=<name>`: the user and all of their servers.
    User,
    /// `!server=<user>/<server>`: one server.
    Server,
    /// `!group=<name>`: the group's members and their servers.
    Group,
    /// `!service=<name>`: one service.
    Service,
}

impl FilterKind {
    /// The word used in scope strings: `user`, `server`, `group` or `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterKind::User => "user",
            FilterKind::Server => "server",
            FilterKind::Group => "group",
            FilterKind::Service => "service",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        match word {
            "user" => Some(FilterKind::User),
            "server" => Some(FilterKind::Server),
            "group" => Some(FilterKind::Group),
            "service" => Some(FilterKind::Service),
            _ => None,
        }
    }
}

impl fmt::Display for FilterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resolved filter: a kind and a non-empty value.
///
/// A server filter's value is `<user>/<server>`, split at the first `/` (the default server is
/// `alice/`). It is kept as one string, as JupyterHub does, so `!server=alice` (no slash) is
/// accepted but covers nothing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    /// `!user=<name>`
    User(String),
    /// `!server=<user>/<server>`
    Server(String),
    /// `!group=<name>`
    Group(String),
    /// `!service=<name>`
    Service(String),
}

impl Filter {
    /// Builds a filter from its kind and value.
    pub fn new(kind: FilterKind, value: impl Into<String>) -> Self {
        let value = value.into();
        match kind {
            FilterKind::User => Filter::User(value),
            FilterKind::Server => Filter::Server(value),
            FilterKind::Group => Filter::Group(value),
            FilterKind::Service => Filter::Service(value),
        }
    }

    /// The filter for one server: `!server=<user>/<server>`.
    pub fn server(user: &str, server: &str) -> Self {
        Filter::Server(format!("{user}/{server}"))
    }

    /// Which kind of resource this filter names.
    pub fn kind(&self) -> FilterKind {
        match self {
            Filter::User(_) => FilterKind::User,
            Filter::Server(_) => FilterKind::Server,
            Filter::Group(_) => FilterKind::Group,
            Filter::Service(_) => FilterKind::Service,
        }
    }

    /// The filter's value (for servers, `<user>/<server>`).
    pub fn value(&self) -> &str {
        match self {
            Filter::User(v) | Filter::Server(v) | Filter::Group(v) | Filter::Service(v) => v,
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind(), self.value())
    }
}

/// The filter part of a raw scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFilter {
    /// `!user`, `!server` or `!service` without a value: resolved against the owner during
    /// expansion. Never [`FilterKind::Group`].
    Bare(FilterKind),
    /// A filter with a value.
    Value(Filter),
}

/// A raw scope as written in a role, token or request: a base name and an optional filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawScope {
    /// The scope name before `!`.
    pub base: String,
    /// The filter after `!`, if any.
    pub filter: Option<RawFilter>,
}

impl RawScope {
    /// Splits `scope` into base and filter, checking only the filter's syntax (not whether the
    /// base exists; use [`ScopeRegistry::parse`] for that).
    pub fn parse(scope: &str) -> Result<Self, ScopeError> {
        parse_syntax(scope, None)
    }
}

impl fmt::Display for RawScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        match &self.filter {
            None => Ok(()),
            Some(RawFilter::Bare(kind)) => write!(f, "!{kind}"),
            Some(RawFilter::Value(filter)) => write!(f, "!{filter}"),
        }
    }
}

fn parse_syntax(scope: &str, who_for: Option<&str>) -> Result<RawScope, ScopeError> {
    let Some((base, filter)) = scope.split_once('!') else {
        return Ok(RawScope {
            base: scope.to_owned(),
            filter: None,
        });
    };
    let bad_filter = || ScopeError::UnknownFilter {
        filter: filter.to_owned(),
        scope: scope.to_owned(),
        who_for: who_for.map(str::to_owned),
    };
    let filter = match filter.split_once('=') {
        // `!group` has no owner to resolve against, so JupyterHub refuses it.
        None => match FilterKind::from_word(filter) {
            Some(kind) if kind != FilterKind::Group => RawFilter::Bare(kind),
            _ => return Err(bad_filter()),
        },
        Some((word, value)) => {
            let kind = FilterKind::from_word(word).ok_or_else(bad_filter)?;
            if value.is_empty() {
                return Err(ScopeError::EmptyFilter {
                    scope: scope.to_owned(),
                });
            }
            RawFilter::Value(Filter::new(kind, value))
        }
    };
    Ok(RawScope {
        base: base.to_owned(),
        filter: Some(filter),
    })
}

// === errors ===

/// Why a scope string or custom scope definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The base name is not a defined scope.
    #[error("Scope '{scope}' {} does not exist", log_for(.who_for))]
    Unknown {
        /// The whole scope string as given.
        scope: String,
        /// Who the scope was for (`token`, `role teacher`, ...), as in JupyterHub's message.
        who_for: Option<String>,
    },
    /// The draft name `all`, renamed `inherit` before JupyterHub 2.0.
    #[error("Draft scope 'all' is now called 'inherit'")]
    DraftAll,
    /// The filter is neither a bare `!user`/`!server`/`!service` nor `!<kind>=<value>`.
    #[error("Scope filter {filter} '!{filter}' in scope '{scope}' {} does not exist", log_for(.who_for))]
    UnknownFilter {
        /// The filter text after `!`.
        filter: String,
        /// The whole scope string.
        scope: String,
        /// Who the scope was for.
        who_for: Option<String>,
    },
    /// `!user=` and friends with nothing after `=`.
    #[error("Empty string is not a valid filter: {scope}")]
    EmptyFilter {
        /// The whole scope string.
        scope: String,
    },
    /// A bare filter where expanded scopes were expected.
    #[error("Unexpanded scope filter {scope} not allowed. Use expanded scopes.")]
    Unexpanded {
        /// The whole scope string.
        scope: String,
    },
    /// A custom scope name that does not match JupyterHub's pattern.
    #[error(
        "Invalid scope name: '{name}'. Custom scopes must start with `custom:` and contain only \
         lowercase ascii letters, numbers, hyphen, underscore, colon, and asterisk (-_:*). The \
         part after `custom:` must start with a letter or number. Scopes may not end with a \
         hyphen or colon."
    )]
    InvalidCustomName {
        /// The refused name.
        name: String,
    },
    /// A scope defined twice with different definitions.
    #[error("Cannot redefine scope {name}: it is already defined differently")]
    Redefined {
        /// The scope name.
        name: String,
    },
    /// A custom scope listing a built-in scope as its subscope.
    #[error(
        "non-custom subscope {subscope} in {name} is not allowed. Custom scopes may only have \
         custom subscopes. Roles should be used to assign multiple scopes together."
    )]
    NonCustomSubscope {
        /// The custom scope.
        name: String,
        /// The built-in scope it listed.
        subscope: String,
    },
    /// A custom scope listing a subscope that is not defined.
    #[error("subscope {subscope} in {name} not found. All scopes must be defined.")]
    MissingSubscope {
        /// The custom scope.
        name: String,
        /// The undefined subscope.
        subscope: String,
    },
}

// JupyterHub formats `f"Scope '{scope}' {log_for} does not exist"` with an empty `log_for` when
// nobody is named, which leaves two spaces; kept so messages compare equal.
fn log_for(who_for: &Option<String>) -> String {
    who_for
        .as_deref()
        .map(|w| format!("for {w}"))
        .unwrap_or_default()
}

// === registry ===

/// A deployment-defined scope (`JupyterHub.custom_scopes`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomScopeSpec {
    /// Shown on the OAuth authorization page.
    pub description: String,
    /// Other custom scopes this one implies.
    #[serde(default)]
    pub subscopes: Vec<String>,
}

/// The scopes known to this hub: the built-in ones plus custom scopes from configuration.
#[derive(Debug, Clone, Default)]
pub struct ScopeRegistry {
    custom: BTreeMap<String, CustomScopeSpec>,
}

/// The owner of a token or role, against which `self` and bare filters are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// A user, by name.
    User(&'a str),
    /// A service, by name.
    Service(&'a str),
}

impl<'a> Owner<'a> {
    /// The owner's name.
    pub fn name(self) -> &'a str {
        match self {
            Owner::User(n) | Owner::Service(n) => n,
        }
    }

    /// `User` or `Service`, as JupyterHub names the class in messages.
    pub fn kind_label(self) -> &'static str {
        match self {
            Owner::User(_) => "User",
            Owner::Service(_) => "Service",
        }
    }
}

/// The resource an OAuth client belongs to (a user's server or a service). The built-in
/// `jupyterhub` client has none and is represented by `None` wherever this appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTarget<'a> {
    /// The client of a user's server (`jupyterhub-user-<name>[-<server>]`).
    Server {
        /// The server's owner.
        user: &'a str,
        /// The server name, `""` for the default server.
        server: &'a str,
    },
    /// The client of a service (`service-<name>`).
    Service(&'a str),
}

/// What expansion resolves `self` and bare filters against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpandContext<'a> {
    /// The user or service owning the scopes.
    pub owner: Option<Owner<'a>>,
    /// The resource of the OAuth client that issued the token, if any.
    pub client: Option<ClientTarget<'a>>,
}

impl<'a> ExpandContext<'a> {
    /// Context with an owner and no OAuth client.
    pub fn owner(owner: Owner<'a>) -> Self {
        ExpandContext {
            owner: Some(owner),
            client: None,
        }
    }

    /// The same context with the issuing OAuth client's resource set.
    pub fn with_client(mut self, client: Option<ClientTarget<'a>>) -> Self {
        self.client = client;
        self
    }

    // Mirrors the filter replacements of `expand_scopes`: `!service` prefers the OAuth client's
    // service over a service owner; `!server` only comes from the client.
    fn resolve(&self, kind: FilterKind) -> Option<Filter> {
        match kind {
            FilterKind::User => match self.owner {
                Some(Owner::User(name)) => Some(Filter::User(name.to_owned())),
                _ => None,
            },
            FilterKind::Service => match (self.client, self.owner) {
                (Some(ClientTarget::Service(name)), _) | (_, Some(Owner::Service(name))) => {
                    Some(Filter::Service(name.to_owned()))
                }
                _ => None,
            },
            FilterKind::Server => match self.client {
                Some(ClientTarget::Server { user, server }) => Some(Filter::server(user, server)),
                _ => None,
            },
            FilterKind::Group => None,
        }
    }
}

/// The result of [`ScopeRegistry::expand_detailed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded, reduced scopes.
    pub scopes: ScopeSet,
    /// Raw scopes dropped because their bare filter (or `self`) had nothing to resolve
    /// against. JupyterHub logs a warning for each.
    pub unresolved: Vec<String>,
}

impl ScopeRegistry {
    /// A registry with the built-in scopes only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds custom scopes (`JupyterHub.custom_scopes`), all or none. Names must match
    /// `^custom:[a-z0-9][a-z0-9_\-\*:]+[a-z0-9_\*]$`; subscopes must be custom scopes defined in
    /// the same call or earlier. Defining an existing scope again identically is a no-op.
    pub fn define_custom_scopes<I>(&mut self, scopes: I) -> Result<(), ScopeError>
    where
        I: IntoIterator<Item = (String, CustomScopeSpec)>,
    {
        let batch: BTreeMap<String, CustomScopeSpec> = scopes.into_iter().collect();
        for (name, spec) in &batch {
            let redefined = match self.custom.get(name) {
                Some(existing) => existing != spec,
                None => builtin(name).is_some(),
            };
            if redefined {
                return Err(ScopeError::Redefined { name: name.clone() });
            }
            if !is_valid_custom_name(name) {
                return Err(ScopeError::InvalidCustomName { name: name.clone() });
            }
            for sub in &spec.subscopes {
                if batch.contains_key(sub) || self.custom.contains_key(sub) {
                    continue;
                }
                return Err(if builtin(sub).is_some() {
                    ScopeError::NonCustomSubscope {
                        name: name.clone(),
                        subscope: sub.clone(),
                    }
                } else {
                    ScopeError::MissingSubscope {
                        name: name.clone(),
                        subscope: sub.clone(),
                    }
                });
            }
        }
        self.custom.extend(batch);
        Ok(())
    }

    /// Whether `name` is a defined scope (built-in or custom). Filters are not accepted here.
    pub fn exists(&self, name: &str) -> bool {
        builtin(name).is_some() || self.custom.contains_key(name)
    }

    /// The description of a defined scope.
    pub fn description(&self, name: &str) -> Option<&str> {
        match builtin(name) {
            Some(b) => Some(b.description),
            None => self.custom.get(name).map(|c| c.description.as_str()),
        }
    }

    /// The direct subscopes of a defined scope (empty for unknown names).
    pub fn subscopes(&self, name: &str) -> Vec<&str> {
        match builtin(name) {
            Some(b) => b.subscopes.to_vec(),
            None => self
                .custom
                .get(name)
                .map(|c| c.subscopes.iter().map(String::as_str).collect())
                .unwrap_or_default(),
        }
    }

    /// `name` and every scope it implies, transitively (empty for unknown names). Custom scopes
    /// may imply each other in a cycle; each is visited once.
    pub fn implied(&self, name: &str) -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let Some(start) = self.canonical(name) else {
            return seen;
        };
        let mut todo = vec![start];
        while let Some(current) = todo.pop() {
            if seen.insert(current) {
                todo.extend(
                    self.subscopes(current)
                        .into_iter()
                        .filter_map(|s| self.canonical(s)),
                );
            }
        }
        seen
    }

    // The registry-owned copy of a name, so results borrow from `self`, not the argument.
    fn canonical(&self, name: &str) -> Option<&str> {
        match builtin(name) {
            Some(b) => Some(b.name),
            None => self.custom.get_key_value(name).map(|(k, _)| k.as_str()),
        }
    }

    /// Every defined scope name: built-in ones in JupyterHub's order, then custom ones.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        BUILTIN_SCOPES
            .iter()
            .map(|s| s.name)
            .chain(self.custom.keys().map(String::as_str))
    }

    /// Parses a raw scope and checks that its base exists, with JupyterHub's messages.
    /// `who_for` names the holder in the message (`token`, `role teacher`).
    pub fn parse(&self, scope: &str, who_for: Option<&str>) -> Result<RawScope, ScopeError> {
        let base = scope.split_once('!').map_or(scope, |(base, _)| base);
        if !self.exists(base) {
            if base == "all" {
                return Err(ScopeError::DraftAll);
            }
            return Err(ScopeError::Unknown {
                scope: scope.to_owned(),
                who_for: who_for.map(str::to_owned),
            });
        }
        parse_syntax(scope, who_for)
    }

    /// Checks a list of raw scopes as JupyterHub's `_check_scopes_exist` does.
    pub fn check_scopes_exist<I, S>(
        &self,
        scopes: I,
        who_for: Option<&str>,
    ) -> Result<(), ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for scope in scopes {
            self.parse(scope.as_ref(), who_for)?;
        }
        Ok(())
    }

    /// Expands raw scopes: resolves bare filters and `self` against `ctx`, adds all implied
    /// scopes, and reduces the result. Raw scopes that cannot be resolved are dropped.
    pub fn expand<I, S>(&self, raw: I, ctx: &ExpandContext<'_>) -> Result<ScopeSet, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.expand_detailed(raw, ctx).map(|e| e.scopes)
    }

    /// Like [`expand`](Self::expand), also reporting the raw scopes that were dropped.
    pub fn expand_detailed<I, S>(
        &self,
        raw: I,
        ctx: &ExpandContext<'_>,
    ) -> Result<Expansion, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Expansion::default();
        let mut wants_self = false;
        for text in raw {
            let text = text.as_ref();
            let parsed = self.parse(text, None)?;
            let filter = match parsed.filter {
                None => None,
                Some(RawFilter::Value(filter)) => Some(filter),
                Some(RawFilter::Bare(kind)) => match ctx.resolve(kind) {
                    Some(filter) => Some(filter),
                    None => {
                        out.unresolved.push(text.to_owned());
                        continue;
                    }
                },
            };
            if parsed.base == "self" && filter.is_none() {
                wants_self = true;
                continue;
            }
            // Mirrors `_expand_scope`: under a server filter, the `read:users*` scopes that
            // server scopes imply (e.g. read:servers -> read:users:name) make no sense and are
            // dropped, the base included. User and group filters keep them.
            let server_filtered = matches!(filter, Some(Filter::Server(_)));
            for name in self.implied(&parsed.base) {
                if server_filtered && name.starts_with("read:user") {
                    continue;
                }
                out.scopes.insert(name, filter.clone());
            }
        }
        if wants_self {
            match ctx.owner {
                Some(Owner::User(user)) => out.scopes.extend(&self_scopes(user)),
                // For services `self` means no scope at all.
                _ => out.unresolved.push("self".to_owned()),
            }
        }
        Ok(out)
    }
}

fn is_valid_custom_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("custom:") else {
        return false;
    };
    let bytes = rest.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let lower_digit = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.len() >= 3
        && lower_digit(first)
        && (lower_digit(last) || matches!(last, b'_' | b'*'))
        && bytes[1..bytes.len() - 1]
            .iter()
            .all(|b| lower_digit(b) || matches!(b, b'_' | b'-' | b'*' | b':'))
}

#[cfg(test)]
mod tests;
