use std::collections::BTreeMap;

use pai_types::{Locality, Usage};
use serde::{Deserialize, Serialize};

/// What a model costs, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens.
    pub input_per_mtok: f64,
    /// Per million completion tokens.
    pub output_per_mtok: f64,
}

/// List prices of well-known models (USD per million tokens), matched by the longest
/// prefix of the model name. Prices change: set your own under `[prices."<model>"]`.
const DEFAULTS: &[(&str, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("o4-mini", 1.10, 4.40),
    ("o3-mini", 1.10, 4.40),
    ("claude-opus-4", 15.00, 75.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-3-5-sonnet", 3.00, 15.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-haiku-4", 1.00, 5.00),
    ("deepseek-chat", 0.27, 1.10),
    ("deepseek-reasoner", 0.55, 2.19),
    ("mistral-large", 2.00, 6.00),
    ("mistral-small", 0.20, 0.60),
    ("llama-3.3-70b-versatile", 0.59, 0.79),
    ("llama-3.1-8b-instant", 0.05, 0.08),
];

/// The price of `model`: the user's table first, then PAI's defaults, by longest prefix.
/// Models that run locally cost nothing.
pub fn price_of(
    table: &BTreeMap<String, Price>,
    model: &str,
    locality: Option<Locality>,
) -> Option<Price> {
    if locality == Some(Locality::Local) {
        return Some(Price {
            input_per_mtok: 0.0,
            output_per_mtok: 0.0,
        });
    }
    let name = model.rsplit('/').next().unwrap_or(model);
    let user = table
        .iter()
        .filter(|(prefix, _)| {
            model.starts_with(prefix.as_str()) || name.starts_with(prefix.as_str())
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, p)| *p);
    user.or_else(|| {
        DEFAULTS
            .iter()
            .filter(|(prefix, _, _)| name.starts_with(prefix))
            .max_by_key(|(prefix, _, _)| prefix.len())
            .map(|(_, i, o)| Price {
                input_per_mtok: *i,
                output_per_mtok: *o,
            })
    })
}

/// The estimated cost of `usage` at `price`, in US dollars.
pub fn cost(price: Price, usage: &Usage) -> f64 {
    (usage.prompt_tokens as f64 * price.input_per_mtok
        + usage.completion_tokens as f64 * price.output_per_mtok)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_user_table_overrides() {
        let none = BTreeMap::new();
        assert_eq!(
            price_of(&none, "gpt-4o-mini-2024-07-18", None)
                .unwrap()
                .input_per_mtok,
            0.15
        );
        assert_eq!(
            price_of(&none, "gpt-4o", None).unwrap().input_per_mtok,
            2.50
        );
        assert_eq!(
            price_of(&none, "openai/gpt-4o-mini", None)
                .unwrap()
                .output_per_mtok,
            0.60
        );
        assert!(price_of(&none, "my-own-model", None).is_none());
        let mut table = BTreeMap::new();
        table.insert(
            "gpt-4o".to_string(),
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
            },
        );
        assert_eq!(
            price_of(&table, "gpt-4o-mini", None)
                .unwrap()
                .input_per_mtok,
            1.0
        );
    }

    #[test]
    fn local_models_are_free_and_cost_scales() {
        let none = BTreeMap::new();
        let free = price_of(&none, "gpt-4o", Some(Locality::Local)).unwrap();
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
            estimated: false,
        };
        assert_eq!(cost(free, &usage), 0.0);
        let p = price_of(&none, "gpt-4o-mini", Some(Locality::Remote)).unwrap();
        assert!((cost(p, &usage) - 0.45).abs() < 1e-9);
    }
}
