//! [`ScopeSet`]: a credential's expanded scopes, and the questions handlers ask of them: may the
//! caller act on this resource (and if not, 403 or 404), what may a list show, what do two sets
//! have in common.
//!
//! Mirrors `scopes.py`: `parse_scopes`/`reduce_scopes` (the representation), `has_scope` and the
//! `needs_scope` decorator (checks), `check_scope_filter` (post-filtering) and
//! `_intersect_expanded_scopes` (intersection).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, Serializer};

use crate::rbac::scopes::{Filter, FilterKind, RawFilter, RawScope, ScopeError};

/// 404 message for a scope held only for other resources. Identical for "no access" and "does
/// not exist", so callers cannot probe for names.
pub const NOT_FOUND_MESSAGE: &str = "No access to resources or resources not found";

/// 403 message when a request carries no valid credential at all.
pub const MISSING_CREDENTIALS_MESSAGE: &str = "Missing or invalid credentials.";

/// The 403 message for a credential holding none of `required` in any form.
pub fn forbidden_message<S: AsRef<str>>(required: &[S]) -> String {
    let names: Vec<&str> = required.iter().map(AsRef::as_ref).collect();
    format!(
        "Action is not authorized with current scopes; requires any of [{}]",
        names.join(", ")
    )
}

// === group membership ===

/// Answers "is this user a member of that group?" for group filters. Handlers back it with the
/// database or with the groups they already loaded for the target user.
pub trait GroupMembership {
    /// Whether `user` is a member of `group`.
    fn is_member(&self, user: &str, group: &str) -> bool;
}

impl<F> GroupMembership for F
where
    F: Fn(&str, &str) -> bool,
{
    fn is_member(&self, user: &str, group: &str) -> bool {
        self(user, group)
    }
}

/// Membership oracle that knows no groups: group filters never match. This is what a component
/// without database access (e.g. the single-user side) can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoGroups;

impl GroupMembership for NoGroups {
    fn is_member(&self, _user: &str, _group: &str) -> bool {
        false
    }
}

/// Membership oracle built from one user's group list (e.g. the target of a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserGroups<'a> {
    /// The user whose groups are known.
    pub user: &'a str,
    /// That user's groups.
    pub groups: &'a [String],
}

impl GroupMembership for UserGroups<'_> {
    fn is_member(&self, user: &str, group: &str) -> bool {
        user == self.user && self.groups.iter().any(|g| g == group)
    }
}

/// Membership oracle from a map of user name to group names.
impl GroupMembership for BTreeMap<String, BTreeSet<String>> {
    fn is_member(&self, user: &str, group: &str) -> bool {
        self.get(user).is_some_and(|groups| groups.contains(group))
    }
}

// === target ===

/// The resource a request acts on, taken from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// No resource in the URL (e.g. `POST /users`, `GET /info`): only unfiltered scopes pass.
    None,
    /// A user, by name.
    User(&'a str),
    /// One server of a user; `server` is `""` for the default server.
    Server {
        /// The server's owner.
        user: &'a str,
        /// The server name.
        server: &'a str,
    },
    /// A group, by name.
    Group(&'a str),
    /// A service, by name.
    Service(&'a str),
}

// === filters ===

/// The resources a filtered scope is limited to. Never empty inside a [`ScopeSet`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    users: BTreeSet<String>,
    servers: BTreeSet<String>,
    groups: BTreeSet<String>,
    services: BTreeSet<String>,
}

impl Filters {
    /// User names from `!user=` filters.
    pub fn users(&self) -> &BTreeSet<String> {
        &self.users
    }

    /// `<user>/<server>` values from `!server=` filters.
    pub fn servers(&self) -> &BTreeSet<String> {
        &self.servers
    }

    /// Group names from `!group=` filters.
    pub fn groups(&self) -> &BTreeSet<String> {
        &self.groups
    }

    /// Service names from `!service=` filters.
    pub fn services(&self) -> &BTreeSet<String> {
        &self.services
    }

    /// Whether no filter is present.
    pub fn is_empty(&self) -> bool {
        self.by_kind().iter().all(|(_, set)| set.is_empty())
    }

    fn by_kind(&self) -> [(FilterKind, &BTreeSet<String>); 4] {
        [
            (FilterKind::User, &self.users),
            (FilterKind::Server, &self.servers),
            (FilterKind::Group, &self.groups),
            (FilterKind::Service, &self.services),
        ]
    }

    /// The kinds with at least one filter.
    pub fn kinds(&self) -> Vec<FilterKind> {
        self.by_kind()
            .into_iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(kind, _)| kind)
            .collect()
    }

    fn set_mut(&mut self, kind: FilterKind) -> &mut BTreeSet<String> {
        match kind {
            FilterKind::User => &mut self.users,
            FilterKind::Server => &mut self.servers,
            FilterKind::Group => &mut self.groups,
            FilterKind::Service => &mut self.services,
        }
    }

    /// Adds one filter.
    pub fn insert(&mut self, filter: Filter) {
        let kind = filter.kind();
        let value = match filter {
            Filter::User(v) | Filter::Server(v) | Filter::Group(v) | Filter::Service(v) => v,
        };
        self.set_mut(kind).insert(value);
    }

    /// Every filter, grouped by kind.
    pub fn iter(&self) -> impl Iterator<Item = (FilterKind, &str)> {
        self.by_kind()
            .into_iter()
            .flat_map(|(kind, set)| set.iter().map(move |v| (kind, v.as_str())))
    }

    fn in_any_group<M: GroupMembership + ?Sized>(&self, user: &str, membership: &M) -> bool {
        self.groups.iter().any(|g| membership.is_member(user, g))
    }

    /// Whether these filters cover `target`: a user filter covers the user and their servers, a
    /// group filter covers its members and their servers. Mirrors `check_scope_filter`.
    pub fn matches<M: GroupMembership + ?Sized>(
        &self,
        target: &Target<'_>,
        membership: &M,
    ) -> bool {
        match *target {
            Target::None => false,
            Target::User(name) => self.users.contains(name) || self.in_any_group(name, membership),
            Target::Server { user, server } => {
                self.servers.contains(&format!("{user}/{server}"))
                    || self.users.contains(user)
                    || self.in_any_group(user, membership)
            }
            Target::Group(name) => self.groups.contains(name),
            Target::Service(name) => self.services.contains(name),
        }
    }

    // Mirrors `_intersect_expanded_scopes` for one base held filtered on both sides: the common
    // filters of each kind, plus nesting resolved in both directions (a server whose owner the
    // other side covers by user or group; a user the other side covers by group). Group against
    // group and user against server-of-user from the other side resolve through the same rules;
    // nothing else is inferred, so the result can be narrower than the true overlap, never wider.
    fn intersect<M: GroupMembership + ?Sized>(&self, other: &Filters, membership: &M) -> Filters {
        let common = |a: &BTreeSet<String>, b: &BTreeSet<String>| -> BTreeSet<String> {
            a.intersection(b).cloned().collect()
        };
        let mut out = Filters {
            users: common(&self.users, &other.users),
            servers: common(&self.servers, &other.servers),
            groups: common(&self.groups, &other.groups),
            services: common(&self.services, &other.services),
        };
        for (a, b) in [(self, other), (other, self)] {
            for server in &a.servers {
                let user = server.split_once('/').map_or(server.as_str(), |(u, _)| u);
                if b.users.contains(user) || b.in_any_group(user, membership) {
                    out.servers.insert(server.clone());
                }
            }
            for user in &a.users {
                if b.in_any_group(user, membership) {
                    out.users.insert(user.clone());
                }
            }
        }
        out
    }
}

/// How a [`ScopeSet`] holds one base scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Unfiltered: every resource.
    All,
    /// Only the resources these (non-empty) filters cover.
    Only(Filters),
}

impl Grant {
    fn matches<M: GroupMembership + ?Sized>(&self, target: &Target<'_>, membership: &M) -> bool {
        match self {
            Grant::All => true,
            Grant::Only(filters) => filters.matches(target, membership),
        }
    }
}

// === scope set ===

/// A set of expanded scopes, kept reduced: a filtered scope disappears when the same base is
/// held unfiltered. Equality is equality of the reduced string forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    grants: BTreeMap<String, Grant>,
}

/// What a scope check decided, mapped to JupyterHub's status codes and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Go ahead.
    Allowed,
    /// A required scope is held, but only for other resources: 404 with
    /// [`NOT_FOUND_MESSAGE`], the same answer as for a missing resource.
    NotFound,
    /// None of the required scopes is held in any usable form: 403 with
    /// [`forbidden_message`].
    Forbidden {
        /// The scopes that would have allowed the action.
        required: Vec<String>,
    },
}

impl Access {
    /// Whether the action may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Access::Allowed)
    }

    /// The HTTP status to answer with: 200 (proceed), 404 or 403.
    pub fn status(&self) -> u16 {
        match self {
            Access::Allowed => 200,
            Access::NotFound => 404,
            Access::Forbidden { .. } => 403,
        }
    }

    /// The error message for the JSON error body; `None` when allowed.
    pub fn message(&self) -> Option<String> {
        match self {
            Access::Allowed => None,
            Access::NotFound => Some(NOT_FOUND_MESSAGE.to_owned()),
            Access::Forbidden { required } => Some(forbidden_message(required)),
        }
    }
}

/// What a list endpoint may show, from one scope (see [`ScopeSet::filter_for_list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    /// Everything.
    All,
    /// Only the resources these filters cover.
    Only(Filters),
    /// Nothing: the scope is not held.
    Nothing,
}

impl ListFilter {
    /// Refuses filters of kinds the endpoint cannot apply, rather than widening them (e.g.
    /// `list:users!server=...` on `GET /users`, which accepts only user and group filters).
    /// JupyterHub answers such requests with a bare 403 (`"message": null`). The error names the
    /// first offending kind.
    pub fn restrict_to(self, kinds: &[FilterKind]) -> Result<Self, FilterKind> {
        if let ListFilter::Only(filters) = &self
            && let Some(bad) = filters.kinds().into_iter().find(|k| !kinds.contains(k))
        {
            return Err(bad);
        }
        Ok(self)
    }

    /// Whether an item passes the filter (for filtering after the query).
    pub fn matches<M: GroupMembership + ?Sized>(
        &self,
        target: &Target<'_>,
        membership: &M,
    ) -> bool {
        match self {
            ListFilter::All => true,
            ListFilter::Only(filters) => filters.matches(target, membership),
            ListFilter::Nothing => false,
        }
    }
}

impl ScopeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one expanded scope, keeping the set reduced.
    pub fn insert(&mut self, base: impl Into<String>, filter: Option<Filter>) {
        let base = base.into();
        match filter {
            None => {
                self.grants.insert(base, Grant::All);
            }
            Some(filter) => match self
                .grants
                .entry(base)
                .or_insert_with(|| Grant::Only(Filters::default()))
            {
                Grant::All => {}
                Grant::Only(filters) => filters.insert(filter),
            },
        }
    }

    /// Builds a set from expanded scope strings (e.g. stored share scopes, or
    /// `$JUPYTERHUB_OAUTH_ACCESS_SCOPES`). Bare filters are refused; names are not checked
    /// against a registry, and nothing is expanded.
    pub fn parse_expanded<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = ScopeSet::new();
        for text in scopes {
            let text = text.as_ref();
            let raw = RawScope::parse(text)?;
            match raw.filter {
                None => set.insert(raw.base, None),
                Some(RawFilter::Value(filter)) => set.insert(raw.base, Some(filter)),
                Some(RawFilter::Bare(_)) => {
                    return Err(ScopeError::Unexpanded {
                        scope: text.to_owned(),
                    });
                }
            }
        }
        Ok(set)
    }

    /// How `base` is held, if at all.
    pub fn grant(&self, base: &str) -> Option<&Grant> {
        self.grants.get(base)
    }

    /// Whether `base` is held in any form, filtered or not.
    pub fn holds(&self, base: &str) -> bool {
        self.grants.contains_key(base)
    }

    /// Whether `base` is held unfiltered.
    pub fn holds_unfiltered(&self, base: &str) -> bool {
        matches!(self.grants.get(base), Some(Grant::All))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// The number of scope strings (each filter counts once).
    pub fn len(&self) -> usize {
        self.grants
            .values()
            .map(|g| match g {
                Grant::All => 1,
                Grant::Only(filters) => filters.iter().count(),
            })
            .sum()
    }

    /// The base scope names held, sorted.
    pub fn bases(&self) -> impl Iterator<Item = &str> {
        self.grants.keys().map(String::as_str)
    }

    /// The scopes as strings (`read:users`, `servers!server=alice/`), sorted as JupyterHub sorts
    /// them for the API (`sorted()` on the strings).
    pub fn to_strings(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.len());
        for (base, grant) in &self.grants {
            match grant {
                Grant::All => out.push(base.clone()),
                Grant::Only(filters) => out.extend(
                    filters
                        .iter()
                        .map(|(kind, value)| format!("{base}!{kind}={value}")),
                ),
            }
        }
        out.sort();
        out
    }

    /// Whether the exact expanded scope string is in the (reduced) set.
    pub fn contains_str(&self, scope: &str) -> bool {
        match scope.split_once('!') {
            None => self.holds_unfiltered(scope),
            Some((base, filter)) => match (self.grants.get(base), filter.split_once('=')) {
                (Some(Grant::Only(filters)), Some((kind, value))) => filters
                    .iter()
                    .any(|(k, v)| k.as_str() == kind && v == value),
                _ => false,
            },
        }
    }

    /// Whether `base` is held for `target`. Mirrors `has_scope` without post-filtering: with
    /// [`Target::None`] only an unfiltered scope passes.
    pub fn allows<M: GroupMembership + ?Sized>(
        &self,
        base: &str,
        target: &Target<'_>,
        membership: &M,
    ) -> bool {
        self.grants
            .get(base)
            .is_some_and(|g| g.matches(target, membership))
    }

    /// The check every API handler runs: any one of `required_any` held for `target` allows
    /// the action. Otherwise: 404 if one of them is held for other resources (only possible
    /// with a target), else 403. Mirrors `needs_scope`.
    pub fn check<M: GroupMembership + ?Sized>(
        &self,
        required_any: &[&str],
        target: &Target<'_>,
        membership: &M,
    ) -> Access {
        if required_any
            .iter()
            .any(|base| self.allows(base, target, membership))
        {
            return Access::Allowed;
        }
        if *target != Target::None && required_any.iter().any(|base| self.holds(base)) {
            return Access::NotFound;
        }
        Access::Forbidden {
            required: required_any.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The check of list endpoints that filter their results afterwards (`needs_scope(...,
    /// post_filter=True)`): any required scope held in any form passes; the handler then applies
    /// [`filter_for_list`](Self::filter_for_list). Only endpoints that really filter may use it.
    pub fn check_post_filter(&self, required_any: &[&str]) -> Access {
        if required_any.iter().any(|base| self.holds(base)) {
            Access::Allowed
        } else {
            Access::Forbidden {
                required: required_any.iter().map(|s| (*s).to_owned()).collect(),
            }
        }
    }

    /// What a list endpoint guarded by `base` may show.
    pub fn filter_for_list(&self, base: &str) -> ListFilter {
        match self.grants.get(base) {
            None => ListFilter::Nothing,
            Some(Grant::All) => ListFilter::All,
            Some(Grant::Only(filters)) => ListFilter::Only(filters.clone()),
        }
    }

    /// The scopes both sets grant, resolving filter nesting (server within user within group,
    /// group membership through `membership`). Every scope in the result is allowed by both
    /// inputs for every target.
    pub fn intersection<M: GroupMembership + ?Sized>(
        &self,
        other: &ScopeSet,
        membership: &M,
    ) -> ScopeSet {
        let mut out = ScopeSet::new();
        for (base, mine) in &self.grants {
            let Some(theirs) = other.grants.get(base) else {
                continue;
            };
            let grant = match (mine, theirs) {
                (Grant::All, g) | (g, Grant::All) => g.clone(),
                (Grant::Only(a), Grant::Only(b)) => {
                    let common = a.intersect(b, membership);
                    if common.is_empty() {
                        continue;
                    }
                    Grant::Only(common)
                }
            };
            out.grants.insert(base.clone(), grant);
        }
        out
    }

    /// Every scope of both sets.
    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        let mut out = self.clone();
        out.extend(other);
        out
    }

    /// Adds every scope of `other`.
    pub fn extend(&mut self, other: &ScopeSet) {
        for (base, grant) in &other.grants {
            match grant {
                Grant::All => self.insert(base.clone(), None),
                Grant::Only(filters) => {
                    for (kind, value) in filters.iter() {
                        self.insert(base.clone(), Some(Filter::new(kind, value)));
                    }
                }
            }
        }
    }

    /// The scope strings of `self` that are not, as strings, in `other`; this is how JupyterHub
    /// reports the scopes a request asked for beyond what the owner holds.
    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        let mut out = ScopeSet::new();
        for (base, grant) in &self.grants {
            match grant {
                Grant::All if !other.holds_unfiltered(base) => out.insert(base.clone(), None),
                Grant::All => {}
                Grant::Only(filters) => {
                    for (kind, value) in filters.iter() {
                        let filter = Filter::new(kind, value);
                        if !other.contains_str(&format!("{base}!{filter}")) {
                            out.insert(base.clone(), Some(filter));
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether `other` grants nothing beyond `self`: every scope of `other` survives
    /// intersection with `self`.
    pub fn covers<M: GroupMembership + ?Sized>(&self, other: &ScopeSet, membership: &M) -> bool {
        other.intersection(self, membership) == *other
    }
}

/// Serialises as the sorted list of scope strings, the form the API returns.
impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.to_strings())
    }
}

#[cfg(test)]
mod tests;
