//! The environment as the router sees it: only the variables in [`env::ALL`], unparsed.

use std::collections::BTreeMap;
use std::fmt;

use super::error::{bad, ConfigError};
use gateway_core::env;

/// The router's variables, keyed by their [`env`] name, each with the name it was set under (a
/// 2026 alias from [`env::ALIASES`] or the name itself). Names match case-insensitively, as they
/// always have, so `router_url` sets `ROUTER_URL`.
#[derive(Default, Clone)]
pub struct RawEnv {
    vars: BTreeMap<&'static str, (&'static str, String)>,
    /// `ROUTER__…` names set in the environment that the router does not know.
    unknown: Vec<String>,
}

impl RawEnv {
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let mut vars = Vec::new();
        let mut unknown = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(text) = name.to_str() else { continue };
            let Some(name) = known(text) else {
                if text.to_ascii_uppercase().starts_with("ROUTER__") {
                    unknown.push(text.to_owned());
                }
                continue;
            };
            // Lossy text would silently change a key or a path: refuse it instead.
            let value = value
                .into_string()
                .map_err(|_| bad(name, "is not UTF-8 text (value not shown)", "set it to plain text"))?;
            vars.push((name.to_owned(), value));
        }
        let mut raw = Self::from_vars(vars);
        unknown.sort();
        raw.unknown = unknown;
        Ok(raw)
    }

    /// Later pairs override earlier ones with the same name (defaults first, then overrides); a
    /// 2026 name overrides its older name whatever the order.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        // envy reads the pairs as the environment (a later pair with the same name wins); the
        // names it yields are matched case-insensitively below.
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let vars: BTreeMap<String, String> =
            envy::from_iter(vars.iter().cloned()).unwrap_or_else(|_| vars.into_iter().collect());
        let mut raw = Self::default();
        let mut from_alias = std::collections::BTreeSet::new();
        for (name, value) in vars {
            let Some(set_as) = known(&name) else { continue };
            let canonical = canonical(set_as);
            if set_as != canonical {
                from_alias.insert(canonical);
            } else if from_alias.contains(canonical) {
                continue;
            }
            raw.vars.insert(canonical, (set_as, value));
        }
        raw
    }

    /// Fills a variable the environment leaves unset (placeholders for a dry run).
    pub fn set_if_unset(&mut self, name: &'static str, value: &str) {
        self.vars.entry(name).or_insert_with(|| (name, value.to_owned()));
    }

    /// One variable, named for its messages as the operator set it, with its value as set
    /// (untrimmed).
    pub fn var(&self, name: &'static str) -> Var<'_> {
        match self.vars.get(name) {
            Some((set_as, value)) => Var { name: set_as, value: Some(value.as_str()) },
            None => Var { name, value: None },
        }
    }

    /// One line per `ROUTER__…` variable the router does not know, naming the closest known one
    /// (a typo in a compose file otherwise goes unnoticed).
    pub fn warnings(&self) -> Vec<String> {
        self.unknown
            .iter()
            .map(|name| {
                let upper = name.to_ascii_uppercase();
                let closest =
                    every_name().min_by_key(|known| edit_distance(&upper, known)).unwrap_or_default();
                format!("{name} is not a setting this router knows (ignored); did you mean {closest}?")
            })
            .collect()
    }
}

fn every_name() -> impl Iterator<Item = &'static str> {
    env::ALL.into_iter().chain(env::ALIASES.into_iter().map(|(alias, _)| alias))
}

/// The name the settings read a variable by (an alias maps to its older name).
fn canonical(name: &'static str) -> &'static str {
    env::ALIASES.into_iter().find(|(alias, _)| *alias == name).map_or(name, |(_, old)| old)
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

/// A variable's name and raw value: what every parser needs to check it and to say what is wrong.
#[derive(Clone, Copy)]
pub struct Var<'a> {
    pub name: &'static str,
    pub value: Option<&'a str>,
}

impl<'a> Var<'a> {
    /// The trimmed value; unset and blank both mean "use the default".
    pub fn present(self) -> Option<&'a str> {
        self.value.map(str::trim).filter(|v| !v.is_empty())
    }

    /// A problem with this variable.
    pub fn bad(self, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        bad(self.name, problem, fix)
    }
}

fn known(name: &str) -> Option<&'static str> {
    every_name().find(|known| known.eq_ignore_ascii_case(name))
}

/// Names only: the values include the API secret.
impl fmt::Debug for RawEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.values().map(|(set_as, _)| set_as)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_router_name_names_the_closest_known_one() {
        let raw = RawEnv { unknown: vec!["ROUTER__STREAM__PORT_RANGE__STRAT".into()], ..RawEnv::default() };
        let warnings = raw.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("did you mean ROUTER__STREAM__PORT_RANGE__START?"), "{warnings:?}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn envy_reads_the_pairs_as_a_map() {
        let pairs = vec![
            ("ROUTER_URL".to_owned(), "http://a".to_owned()),
            ("ROUTER_URL".to_owned(), "http://b".to_owned()),
        ];
        let map: BTreeMap<String, String> = envy::from_iter(pairs.clone()).unwrap();
        assert_eq!(map.len(), 1, "{map:?}");
        assert_eq!(
            RawEnv::from_vars(pairs).var(env::ROUTER_URL).value,
            Some("http://b"),
            "the later pair wins"
        );
    }
}
