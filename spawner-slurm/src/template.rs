//! The templates of the batch spawner (Jinja syntax, rendered by minijinja): the job script,
//! every word of every command, and the string variables. All are compiled once at startup;
//! an undefined variable fails the render with its name instead of becoming empty text, except
//! in `{% if %}` tests.
//!
//! A context has three layers: the fixed facts of the server ([`FIXED`]: `username`, `home`,
//! `job_id`, `cmd`, ...), then the configured variables (rendered against the facts), then the
//! user's options, which replace variables of the same name and are never rendered themselves.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::config::{BatchConfig, ConfigError};

/// Names the spawner fills in; variables and options may not take them.
pub(crate) const FIXED: [&str; 14] = [
    "username",
    "servername",
    "job_name",
    "home",
    "prefix",
    "cmd",
    "env",
    "keepvars",
    "ip",
    "port",
    "service_url",
    "job_id",
    "options",
    "kind",
];

/// Which command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Submit,
    Status,
    Cancel,
    CancelByName,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Submit => "submit",
            Command::Status => "status",
            Command::Cancel => "cancel",
            Command::CancelByName => "cancel_by_name",
        }
    }
}

/// A template that failed to render.
#[derive(Debug, thiserror::Error)]
#[error("rendering {what}: {message}")]
pub(crate) struct RenderError {
    what: String,
    message: String,
}

impl RenderError {
    fn new(what: &str, e: &minijinja::Error) -> Self {
        RenderError {
            what: what.to_owned(),
            message: describe(e),
        }
    }
}

/// A minijinja error with its detail.
fn describe(e: &minijinja::Error) -> String {
    let message = e.to_string();
    match e.detail() {
        Some(detail) if !message.contains(detail) => format!("{message}: {detail}"),
        _ => message,
    }
}

/// How a template is named in configuration errors: `status.1` is `status, word 2`.
fn label(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((command, i)) if !command.starts_with("variables") || command.contains('.') => {
            match i.parse::<usize>() {
                Ok(i) => format!("{command}, word {}", i + 1),
                Err(_) => name.to_owned(),
            }
        }
        _ => name.to_owned(),
    }
}

/// The compiled templates.
#[derive(Debug)]
pub(crate) struct Templates {
    env: Environment<'static>,
    /// How many words each command has (`None`: not configured).
    words: BTreeMap<&'static str, Option<usize>>,
    /// Variable name → how many list items (`None`: a string).
    variables: BTreeMap<String, Option<usize>>,
}

/// Single-quotes `word` for a POSIX shell when it holds anything but safe characters.
pub(crate) fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

impl Templates {
    /// Compiles everything `config` holds.
    pub fn compile(config: &BatchConfig) -> Result<Templates, ConfigError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        // A job script ends with a newline like any file.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| ConfigError(format!("template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.add_filter("shell_quote", |s: String| shell_quote(&s));
        let mut add = |name: String, source: &str| {
            env.add_template_owned(name.clone(), source.to_owned())
                .map_err(|e| ConfigError(format!("{}: {}", label(&name), describe(&e))))
        };
        let p = &config.preset;
        add("script".to_owned(), &p.script)?;
        let mut words = BTreeMap::new();
        for (command, argv) in [
            (Command::Submit, Some(&p.submit)),
            (Command::Status, Some(&p.status)),
            (Command::Cancel, Some(&p.cancel)),
            (Command::CancelByName, p.cancel_by_name.as_ref()),
        ] {
            if let Some(argv) = argv {
                for (i, word) in argv.iter().enumerate() {
                    add(format!("{}.{i}", command.name()), word)?;
                }
            }
            words.insert(command.name(), argv.map(Vec::len));
        }
        let mut variables = BTreeMap::new();
        for (name, value) in &config.variables {
            if FIXED.contains(&name.as_str()) {
                return Err(ConfigError(format!(
                    "variables.{name}: {name} is filled in by the spawner and cannot be set"
                )));
            }
            match value {
                Value::String(s) => {
                    add(format!("variables.{name}"), s)?;
                    variables.insert(name.clone(), None);
                }
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        add(
                            format!("variables.{name}.{i}"),
                            item.as_str().unwrap_or_default(),
                        )?;
                    }
                    variables.insert(name.clone(), Some(items.len()));
                }
                _ => {}
            }
        }
        for name in config.options.keys() {
            if FIXED.contains(&name.as_str()) {
                return Err(ConfigError(format!(
                    "options.{name}: {name} is filled in by the spawner; users cannot set it"
                )));
            }
        }
        Ok(Templates {
            env,
            words,
            variables,
        })
    }

    fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String, RenderError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| RenderError::new(name, &e))
    }

    /// The full context: `facts`, the variables rendered against them, then `options` (which
    /// replace variables of the same name; a list variable takes a single option value as a
    /// one-item list).
    pub fn context(
        &self,
        mut facts: Map<String, Value>,
        options: &Map<String, Value>,
    ) -> Result<minijinja::Value, RenderError> {
        let base = minijinja::Value::from(minijinja::value::Serde(&facts));
        let mut rendered = Map::new();
        for (name, items) in &self.variables {
            let value = match items {
                None => Value::String(self.render(&format!("variables.{name}"), &base)?),
                Some(n) => Value::Array(
                    (0..*n)
                        .map(|i| {
                            self.render(&format!("variables.{name}.{i}"), &base)
                                .map(Value::String)
                        })
                        .collect::<Result<_, _>>()?,
                ),
            };
            rendered.insert(name.clone(), value);
        }
        for (name, value) in options {
            let value = match (self.variables.get(name), value) {
                (Some(Some(_)), Value::String(s)) => Value::Array(vec![Value::String(s.clone())]),
                _ => value.clone(),
            };
            rendered.insert(name.clone(), value);
        }
        facts.insert("options".to_owned(), Value::Object(options.clone()));
        facts.extend(rendered);
        Ok(minijinja::Value::from(minijinja::value::Serde(&facts)))
    }

    /// The job script.
    pub fn script(&self, ctx: &minijinja::Value) -> Result<String, RenderError> {
        self.render("script", ctx)
    }

    /// The words of `command`; `None` when it is not configured.
    pub fn command(
        &self,
        command: Command,
        ctx: &minijinja::Value,
    ) -> Result<Option<Vec<String>>, RenderError> {
        let Some(Some(n)) = self.words.get(command.name()) else {
            return Ok(None);
        };
        (0..*n)
            .map(|i| self.render(&format!("{}.{i}", command.name()), ctx))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::slurm::{SlurmRequest, preset};

    fn facts() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "username": "alice", "servername": "", "job_name": "jupyterhub-alice",
            "home": "/home/alice", "prefix": "/user/alice/", "cmd": "srv --x 'a b'",
            "env": {"A": "1"}, "keepvars": "A", "ip": "0.0.0.0", "port": 0,
            "service_url": "http://0.0.0.0:0/user/alice/", "job_id": "", "kind": "slurm",
        }) else {
            unreachable!()
        };
        map
    }

    #[test]
    fn the_slurm_script() {
        let mut request = SlurmRequest::new();
        request.partition = "debug".into();
        request.time = "1:00:00".into();
        request.directives = vec!["--exclusive".into()];
        request.prologue = "module load python".into();
        let config = BatchConfig::slurm(&request);
        let t = Templates::compile(&config).unwrap();
        let options = json!({"time": "0:30:00", "directives": "--hold"});
        let ctx = t.context(facts(), options.as_object().unwrap()).unwrap();
        let script = t.script(&ctx).unwrap();
        assert_eq!(
            script,
            "#!/bin/bash\n\
             #SBATCH --job-name=jupyterhub-alice\n\
             #SBATCH --chdir=/home/alice\n\
             #SBATCH --output=/home/alice/.jupyterhub-slurm-%j.log\n\
             #SBATCH --partition=debug\n\
             #SBATCH --time=0:30:00\n\
             #SBATCH --hold\n\
             \n\
             set -euo pipefail\n\
             module load python\n\
             srun srv --x 'a b'\n\
             \n"
        );
        let mut with_id = facts();
        with_id.insert("job_id".into(), "42".into());
        let ctx = t.context(with_id, &Map::new()).unwrap();
        assert_eq!(
            t.command(Command::Status, &ctx).unwrap().unwrap(),
            ["scontrol", "show", "job", "--oneliner", "42"]
        );
        assert_eq!(
            t.command(Command::CancelByName, &ctx).unwrap().unwrap(),
            ["scancel", "--name=jupyterhub-alice"]
        );
    }

    #[test]
    fn undefined_variables_are_errors_that_name_them() {
        let mut config = BatchConfig::new(preset());
        config.preset.script = "#!/bin/sh\n{{ partiton }}\n".into();
        let t = Templates::compile(&config).unwrap();
        let ctx = t.context(facts(), &Map::new()).unwrap();
        let err = t.script(&ctx).unwrap_err().to_string();
        assert!(err.contains("rendering script"), "{err}");
        assert!(err.contains("undefined"), "{err}");
        // `{% if %}` on an undefined name is allowed: false.
        config.preset.script = "{% if nothing %}x{% endif %}y".into();
        let t = Templates::compile(&config).unwrap();
        assert_eq!(t.script(&ctx).unwrap(), "y");
    }

    #[test]
    fn fixed_names_cannot_be_configured() {
        let mut config = BatchConfig::new(preset());
        config.options.insert("cmd".into(), ".*".into());
        assert!(
            Templates::compile(&config)
                .unwrap_err()
                .0
                .contains("users cannot set it")
        );
        let mut config = BatchConfig::new(preset());
        config.variables.insert("home".into(), "/tmp".into());
        assert!(Templates::compile(&config).is_err());
    }

    #[test]
    fn options_are_not_templates() {
        let mut config = BatchConfig::new(preset());
        config.preset.script = "{{ partition }}".into();
        config
            .variables
            .insert("partition".into(), "{{ username }}-p".into());
        let t = Templates::compile(&config).unwrap();
        let ctx = t.context(facts(), &Map::new()).unwrap();
        assert_eq!(t.script(&ctx).unwrap(), "alice-p");
        let options = json!({"partition": "{{ env }}"});
        let ctx = t.context(facts(), options.as_object().unwrap()).unwrap();
        assert_eq!(t.script(&ctx).unwrap(), "{{ env }}");
    }

    #[test]
    fn labels() {
        assert_eq!(label("status.1"), "status, word 2");
        assert_eq!(label("script"), "script");
        assert_eq!(label("variables.partition"), "variables.partition");
        assert_eq!(
            label("variables.directives.0"),
            "variables.directives, word 1"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("plain-word_1.2"), "plain-word_1.2");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
