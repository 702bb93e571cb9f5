//! User options (from the spawn page's form or the REST API): only those the operator lists,
//! each value matching the operator's pattern in full. Values end up in job scripts, so
//! nothing with a control character (a newline would start a new directive) ever passes,
//! whatever the pattern says.

use std::collections::BTreeMap;

use hub_plugin::SpawnError;
use regex::Regex;
use serde_json::{Map, Value};

/// The longest value accepted.
const MAX_VALUE: usize = 1024;

fn refuse(message: String) -> SpawnError {
    SpawnError::Refused {
        message,
        status: 400,
    }
}

/// One value as text: strings as they are, numbers and booleans written out.
fn text(name: &str, value: &Value) -> Result<String, SpawnError> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            return Err(refuse(format!(
                "Option {name:?} must be text, a number or a list of those"
            )));
        }
    };
    if text.chars().any(char::is_control) {
        return Err(refuse(format!(
            "Option {name:?} may not contain line breaks or other control characters"
        )));
    }
    if text.len() > MAX_VALUE {
        return Err(refuse(format!(
            "Option {name:?} is longer than {MAX_VALUE} characters"
        )));
    }
    Ok(text)
}

/// What to do with an option that is not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unlisted {
    /// Refuse it: options as the user sends them.
    Refuse,
    /// Leave it out (logged): options a start gets, which the hub saved earlier or added
    /// itself (a profile's), and which may hold keys meant for other spawners.
    Drop,
}

/// Checks `options` against `allowed` (name → anchored pattern). Empty values are dropped (the
/// configured default applies); a form field given several times becomes a list.
///
/// # Errors
/// A refusal (400) naming the first option that does not match, or (with
/// [`Unlisted::Refuse`]) that is not allowed.
pub(crate) fn validate(
    allowed: &BTreeMap<String, Regex>,
    unlisted: Unlisted,
    options: &Value,
) -> Result<Map<String, Value>, SpawnError> {
    let map = match options {
        Value::Object(map) => map,
        Value::Null => return Ok(Map::new()),
        _ => return Err(refuse("Server options must be a JSON object".to_owned())),
    };
    let mut valid = Map::new();
    for (name, value) in map {
        let values: Vec<String> = match value {
            Value::Array(items) => items
                .iter()
                .map(|v| text(name, v))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect(),
            Value::Null => Vec::new(),
            single => Some(text(name, single)?)
                .filter(|v| !v.is_empty())
                .into_iter()
                .collect(),
        };
        if values.is_empty() {
            continue;
        }
        let Some(pattern) = allowed.get(name) else {
            if unlisted == Unlisted::Drop {
                tracing::warn!(
                    option = %name,
                    "a server option that spawner.batch.options does not list is left out"
                );
                continue;
            }
            let known = if allowed.is_empty() {
                "this hub takes no server options".to_owned()
            } else {
                format!(
                    "the options are: {}",
                    allowed.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            return Err(refuse(format!("Unknown server option {name:?}: {known}")));
        };
        if let Some(bad) = values.iter().find(|v| !pattern.is_match(v)) {
            return Err(refuse(format!(
                "{bad:?} is not an accepted value for the option {name:?}"
            )));
        }
        let value = match (value, values.as_slice()) {
            (Value::Array(_), _) if values.len() > 1 => {
                Value::Array(values.into_iter().map(Value::String).collect())
            }
            (_, [one]) => Value::String(one.clone()),
            _ => Value::Array(values.into_iter().map(Value::String).collect()),
        };
        valid.insert(name.clone(), value);
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn allowed() -> BTreeMap<String, Regex> {
        [
            ("partition", r"\A(?:debug|gpu)\z"),
            ("time", r"\A(?:\d{1,2}:\d{2}:\d{2})\z"),
            ("directives", r"\A(?:--[a-z-]+(?:=[\w:,.-]+)?)\z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Regex::new(v).unwrap()))
        .collect()
    }

    fn message(result: Result<Map<String, Value>, SpawnError>) -> String {
        match result {
            Err(SpawnError::Refused { message, status }) => {
                assert_eq!(status, 400);
                message
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accepted_options() {
        let got = validate(
            &allowed(),
            Unlisted::Refuse,
            &json!({
                "partition": ["gpu"],
                "time": " 1:00:00 ",
                "directives": ["--exclusive", "--gres=gpu:2"],
                "unused": "",
            }),
        )
        .unwrap();
        assert_eq!(
            Value::Object(got),
            json!({
                "partition": "gpu",
                "time": "1:00:00",
                "directives": ["--exclusive", "--gres=gpu:2"],
            })
        );
        assert!(
            validate(&allowed(), Unlisted::Refuse, &Value::Null)
                .unwrap()
                .is_empty()
        );
        // What a start gets may hold options for other spawners: those are left out.
        let got = validate(
            &allowed(),
            Unlisted::Drop,
            &json!({"partition": "debug", "image": "x"}),
        )
        .unwrap();
        assert_eq!(Value::Object(got), json!({"partition": "debug"}));
        assert!(validate(&allowed(), Unlisted::Drop, &json!({"partition": "other"})).is_err());
    }

    #[test]
    fn refused_options() {
        let m = message(validate(
            &allowed(),
            Unlisted::Refuse,
            &json!({"partition": "batch"}),
        ));
        assert!(m.contains("\"batch\" is not an accepted value"), "{m}");
        let m = message(validate(
            &allowed(),
            Unlisted::Refuse,
            &json!({"qos": "high"}),
        ));
        assert!(
            m.contains("the options are: directives, partition, time"),
            "{m}"
        );
        let m = message(validate(
            &BTreeMap::new(),
            Unlisted::Refuse,
            &json!({"qos": "high"}),
        ));
        assert!(m.contains("takes no server options"), "{m}");
        let m = message(validate(
            &allowed(),
            Unlisted::Refuse,
            &json!({"directives": "--x\n#SBATCH --uid=0"}),
        ));
        assert!(m.contains("line breaks"), "{m}");
        // A pattern cannot let a control character through.
        let loose: BTreeMap<String, Regex> =
            [("x".to_owned(), Regex::new(r"(?s)\A.*\z").unwrap())].into();
        assert!(validate(&loose, Unlisted::Refuse, &json!({"x": "a\rb"})).is_err());
        let m = message(validate(
            &allowed(),
            Unlisted::Refuse,
            &json!({"time": {"h": 1}}),
        ));
        assert!(m.contains("must be text"), "{m}");
        let m = message(validate(&allowed(), Unlisted::Refuse, &json!(["x"])));
        assert!(m.contains("JSON object"), "{m}");
    }
}
