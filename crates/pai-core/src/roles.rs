//! System prompts, roles and templates: what a run's instructions are, from `--system`,
//! `--role` (`[roles.<name>]` in config.toml), the session's own system prompt and the
//! default, with placeholders filled from `--var` and the run's input.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::RoleSettings;
use crate::error::{CoreError, Result};
use crate::workspace::Workspace;

/// A run's instructions, resolved: what the engine is given for one turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instructions {
    /// The system prompt for this run; `None` leaves the session's (or the default).
    pub system: Option<String>,
    /// The input, with a role's prompt template applied.
    pub input: String,
    /// The model a role asks for (a run's `--model` goes over it).
    pub model: Option<String>,
    /// The sampling temperature a role asks for.
    pub temperature: Option<f64>,
}

/// What a run asked for, before roles and templates are applied.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// `--role <name>`.
    pub role: Option<String>,
    /// `--system "…"`, over the role's system prompt.
    pub system: Option<String>,
    /// `--var name=value`, for the templates' `{{name}}` placeholders.
    pub vars: BTreeMap<String, String>,
    /// The input typed or piped (may be empty when the role's template needs none).
    pub input: String,
}

/// A line of `pai roles`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleLine {
    /// The role's name.
    pub name: String,
    /// The model it asks for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its temperature, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Its `about`, else the first line of its system prompt or template.
    pub about: String,
    /// The placeholders its templates use (`input` included when it takes the input).
    pub placeholders: Vec<String>,
}

impl Workspace {
    /// The role called `name`; an unknown one is an error listing the defined ones.
    pub fn role(&self, name: &str) -> Result<&RoleSettings> {
        self.config().roles.get(name).ok_or_else(|| {
            let defined: Vec<&str> = self.config().roles.keys().map(String::as_str).collect();
            CoreError::Invalid(if defined.is_empty() {
                format!(
                    "no role '{name}': config.toml defines no roles; add one under [roles.{name}] with a system prompt"
                )
            } else {
                format!(
                    "no role '{name}'; the roles defined in config.toml are: {}",
                    defined.join(", ")
                )
            })
        })
    }

    /// The roles from config.toml, by name.
    pub fn roles(&self) -> Vec<RoleLine> {
        self.config()
            .roles
            .iter()
            .map(|(name, r)| {
                // Without an `about`, the first line of its system prompt or template.
                let about = r.about.clone().unwrap_or_else(|| {
                    [r.system.as_deref(), r.prompt.as_deref()]
                        .into_iter()
                        .flatten()
                        .flat_map(str::lines)
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                        .to_string()
                });
                let mut placeholders: Vec<String> = [r.system.as_deref(), r.prompt.as_deref()]
                    .into_iter()
                    .flatten()
                    .flat_map(placeholders)
                    .collect();
                placeholders.sort();
                placeholders.dedup();
                RoleLine {
                    name: name.clone(),
                    model: r.model.clone(),
                    temperature: r.temperature,
                    about,
                    placeholders,
                }
            })
            .collect()
    }

    /// A run's instructions: `--system` over the role's system prompt, the role's prompt
    /// template around the input, every `{{placeholder}}` filled. Refuses an unknown role,
    /// a placeholder with no value, and a run with nothing to send.
    pub fn instructions(&self, ask: Ask) -> Result<Instructions> {
        let role = ask.role.as_deref().map(|r| self.role(r)).transpose()?;
        let input = ask.input;
        let system_template = ask.system.or_else(|| role.and_then(|r| r.system.clone()));
        let system = system_template
            .map(|t| fill_template(&t, &ask.vars, &input))
            .transpose()?;
        let input = match role.and_then(|r| r.prompt.as_deref()) {
            Some(template) if template.contains("{{input") => {
                fill_template(template, &ask.vars, &input)?
            }
            Some(template) => {
                let head = fill_template(template, &ask.vars, &input)?;
                if input.trim().is_empty() {
                    head
                } else {
                    format!("{}\n\n{input}", head.trim_end())
                }
            }
            None => input,
        };
        if input.trim().is_empty() {
            return Err(CoreError::Invalid(
                "nothing to send: give the prompt as text ('pai prompt \"…\"') or pipe it on stdin"
                    .into(),
            ));
        }
        Ok(Instructions {
            system,
            input,
            model: role.and_then(|r| r.model.clone()),
            temperature: role.and_then(|r| r.temperature),
        })
    }

    /// Sets (or with `None` clears) session `name`'s own system prompt; returns it.
    pub fn set_system(
        &self,
        name: &pai_types::SessionName,
        system: Option<String>,
    ) -> Result<Option<String>> {
        if system.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(CoreError::Invalid(
                "the system prompt cannot be empty; give the text, or 'none' to go back to the default"
                    .into(),
            ));
        }
        let meta = self.store().update(name, |meta| {
            meta.system = system;
            Ok(())
        })?;
        Ok(meta.system)
    }
}

/// The placeholders `{{name}}` or `{{name|default}}` in `template`: a name of letters,
/// digits, `_` and `-`. Anything else between braces is left as text.
fn tokens(template: &str) -> Vec<(std::ops::Range<usize>, &str, Option<&str>)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = template[from..].find("{{").map(|i| i + from) {
        let Some(close) = template[open + 2..].find("}}").map(|i| i + open + 2) else {
            break;
        };
        let inner = &template[open + 2..close];
        let (name, default) = match inner.split_once('|') {
            Some((n, d)) => (n.trim(), Some(d)),
            None => (inner.trim(), None),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            out.push((open..close + 2, name, default));
            from = close + 2;
        } else {
            from = open + 2;
        }
    }
    out
}

fn placeholders(template: &str) -> Vec<String> {
    tokens(template)
        .into_iter()
        .map(|(_, name, _)| name.to_string())
        .collect()
}

/// `template` with its placeholders filled: `{{input}}` by the run's input, `{{name}}` by
/// `vars` (`--var name=value`), `{{name|default}}` by the default when no value is given.
/// A placeholder with no value and no default is an error naming it.
pub fn fill_template(
    template: &str,
    vars: &BTreeMap<String, String>,
    input: &str,
) -> Result<String> {
    let mut out = String::with_capacity(template.len() + input.len());
    let mut last = 0;
    for (range, name, default) in tokens(template) {
        out.push_str(&template[last..range.start]);
        let value = match (name, vars.get(name), default) {
            (_, Some(v), _) => v.as_str(),
            ("input", None, _) if !input.trim().is_empty() => input,
            (_, None, Some(d)) => d,
            ("input", None, None) => {
                return Err(CoreError::Invalid(
                    "the template needs the input ({{input}}); give it as text or pipe it on stdin"
                        .into(),
                ));
            }
            (_, None, None) => {
                return Err(CoreError::Invalid(format!(
                    "the template needs a value for '{{{{{name}}}}}'; pass --var {name}=…"
                )));
            }
        };
        out.push_str(value);
        last = range.end;
    }
    out.push_str(&template[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_are_filled_from_vars_input_and_defaults() {
        let t = "In {{lang|English}}, {{ style }}: {{input}} {{not a name}} {{";
        assert_eq!(
            fill_template(t, &vars(&[("style", "briefly")]), "the text").unwrap(),
            "In English, briefly: the text {{not a name}} {{"
        );
        assert_eq!(
            fill_template("{{lang|en}}", &vars(&[("lang", "pt")]), "").unwrap(),
            "pt"
        );
    }

    #[test]
    fn a_missing_value_names_the_placeholder() {
        let err = fill_template("Use {{tone}}", &vars(&[]), "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the template needs a value for '{{tone}}'; pass --var tone=…"
        );
        let err = fill_template("Sum up {{input}}", &vars(&[]), " ").unwrap_err();
        assert!(err.to_string().contains("needs the input"), "{err}");
    }
}
