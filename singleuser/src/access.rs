//! Who may use this server: a token whose scopes (as `GET /hub/api/user` lists them) meet the
//! server's access scopes, `$JUPYTERHUB_OAUTH_ACCESS_SCOPES` (hub-protocol §3.4).
//!
//! Terms: a scope is `<name>` or `<name>!<filter>`, the filter being `user=<u>`,
//! `server=<u>/<s>`, `group=<g>` or `service=<n>`. A held scope meets a required one when the
//! narrower of the two is itself required: `access:servers` (unfiltered) meets everything
//! required under that name, `access:servers!user=alice` meets
//! `access:servers!server=alice/`, and the reverse also holds because the server scope is
//! itself listed. Group filters cannot be resolved without the hub's database and never match
//! user or server filters, as in JupyterHub's `check_scopes`.

/// A scope split at its filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scope<'a> {
    name: &'a str,
    filter: Option<Filter<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter<'a> {
    User(&'a str),
    /// `(user, server)`; `server` is `""` for the default server.
    Server(&'a str, &'a str),
    Other(&'a str),
}

fn parse(scope: &str) -> Scope<'_> {
    let Some((name, filter)) = scope.split_once('!') else {
        return Scope {
            name: scope,
            filter: None,
        };
    };
    let filter = if let Some(user) = filter.strip_prefix("user=") {
        Filter::User(user)
    } else if let Some(server) = filter.strip_prefix("server=") {
        match server.split_once('/') {
            Some((user, name)) => Filter::Server(user, name),
            None => Filter::Other(filter),
        }
    } else {
        Filter::Other(filter)
    };
    Scope {
        name,
        filter: Some(filter),
    }
}

/// The narrower of two scopes with the same name, if they overlap.
fn intersect<'a>(a: Scope<'a>, b: Scope<'a>) -> Option<Scope<'a>> {
    if a.name != b.name {
        return None;
    }
    match (a.filter, b.filter) {
        (None, _) => Some(b),
        (_, None) => Some(a),
        (Some(x), Some(y)) if x == y => Some(a),
        (Some(Filter::User(u)), Some(Filter::Server(su, _))) if u == su => Some(b),
        (Some(Filter::Server(su, _)), Some(Filter::User(u))) if u == su => Some(a),
        _ => None,
    }
}

/// The first required scope that `held` grants, if any.
pub fn granted<'a, H: AsRef<str>>(required: &'a [String], held: &[H]) -> Option<&'a str> {
    let parsed: Vec<Scope<'_>> = required.iter().map(|r| parse(r)).collect();
    for h in held {
        let h = parse(h.as_ref());
        for (i, r) in parsed.iter().enumerate() {
            if let Some(narrow) = intersect(h, *r)
                && parsed.contains(&narrow)
            {
                return Some(&required[i]);
            }
        }
    }
    None
}

/// The default access scopes of a server: its own, and its owner's.
pub fn default_access_scopes(user: &str, server: &str) -> Vec<String> {
    vec![
        format!("access:servers!server={user}/{server}"),
        format!("access:servers!user={user}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Vec<String> {
        default_access_scopes("alice", "")
    }

    #[test]
    fn matching_table() {
        let cases: &[(&[&str], bool)] = &[
            (&["access:servers"], true),
            (&["access:servers!user=alice"], true),
            (&["access:servers!server=alice/"], true),
            (&["read:users", "access:servers!server=alice/"], true),
            (&["access:servers!server=alice/gpu"], false),
            (&["access:servers!user=bob"], false),
            (&["access:servers!server=bob/"], false),
            (&["access:servers!group=alice"], false),
            (&["access:services"], false),
            (&["access:servers!user=alicex"], false),
            (&["access:serversx"], false),
            (&[], false),
        ];
        for (held, ok) in cases {
            assert_eq!(granted(&alice(), held).is_some(), *ok, "{held:?}");
        }
    }

    #[test]
    fn named_server() {
        let req = default_access_scopes("carol", "gpu2");
        assert_eq!(
            granted(&req, &["access:servers!server=carol/gpu2"]),
            Some("access:servers!server=carol/gpu2")
        );
        assert!(granted(&req, &["access:servers!server=carol/"]).is_none());
        assert!(granted(&req, &["access:servers!user=carol"]).is_some());
    }

    #[test]
    fn unfiltered_requirement_needs_unfiltered_scope() {
        let req = vec!["access:servers".to_owned()];
        assert!(granted(&req, &["access:servers!user=alice"]).is_none());
        assert!(granted(&req, &["access:servers"]).is_some());
    }
}
