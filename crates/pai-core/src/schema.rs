//! Structured output (`--schema`): the answer must be JSON matching a JSON Schema. The
//! schema is checked before anything is sent; an answer is parsed (a Markdown fence around
//! it is forgiven) and validated, and what is wrong is said in one line for the retry.

use serde_json::Value;

use crate::error::{CoreError, Result};

/// A compiled JSON Schema.
pub(crate) struct Schema {
    validator: jsonschema::Validator,
}

impl Schema {
    /// Compiles `schema`; a schema that is not one is the user's error, said before any call.
    pub(crate) fn new(schema: &Value) -> Result<Self> {
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| CoreError::Invalid(format!("--schema is not a valid JSON Schema: {e}")))?;
        Ok(Self { validator })
    }

    /// The answer as compact JSON when it matches, else what is wrong with it.
    pub(crate) fn check(&self, answer: &str) -> std::result::Result<String, String> {
        let text = strip_fence(answer);
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("it is not JSON ({e})"))?;
        let problems: Vec<String> = self
            .validator
            .iter_errors(&value)
            .take(5)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{e} (at {at})")
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(value.to_string())
    }
}

/// `text` without a Markdown code fence around it, which models add out of habit.
fn strip_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.split_once('\n').map_or("", |(_, body)| body);
    rest.trim_end().strip_suffix("```").unwrap_or(rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_parsed_validated_and_their_faults_named() {
        let s = Schema::new(&json!({
            "type": "object",
            "properties": { "city": { "type": "string" }, "pop": { "type": "integer" } },
            "required": ["city", "pop"]
        }))
        .unwrap();
        assert_eq!(
            s.check("```json\n{\"city\": \"Lima\", \"pop\": 10}\n```")
                .unwrap(),
            r#"{"city":"Lima","pop":10}"#
        );
        let err = s.check(r#"{"city": "Lima", "pop": "many"}"#).unwrap_err();
        assert!(err.contains("\"many\" is not of type \"integer\""), "{err}");
        assert!(err.contains("/pop"), "{err}");
        assert!(s.check("Lima").unwrap_err().starts_with("it is not JSON"));
        assert!(Schema::new(&json!({ "type": 5 })).is_err());
    }
}
