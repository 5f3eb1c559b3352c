//! The environment as the router sees it: only the variables in [`env::ALL`], unparsed.

use std::collections::BTreeMap;
use std::fmt;

use super::error::{bad, ConfigError};
use gateway_core::env;

/// The router's variables, keyed by their [`env`] name. Names match case-insensitively, as they
/// always have, so `router_url` sets `ROUTER_URL`.
#[derive(Default, Clone)]
pub struct RawEnv(BTreeMap<&'static str, String>);

impl RawEnv {
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().and_then(known) else { continue };
            // Lossy text would silently change a key or a path: refuse it instead.
            let value = value
                .into_string()
                .map_err(|_| bad(name, "is not UTF-8 text (value not shown)", "set it to plain text"))?;
            vars.push((name.to_owned(), value));
        }
        Ok(Self::from_vars(vars))
    }

    /// Later pairs override earlier ones with the same name (defaults first, then overrides).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(vars.into_iter().filter_map(|(name, value)| Some((known(&name)?, value))).collect())
    }

    /// Fills a variable the environment leaves unset (placeholders for a dry run).
    pub fn set_if_unset(&mut self, name: &'static str, value: &str) {
        self.0.entry(name).or_insert_with(|| value.to_owned());
    }

    /// One variable, named for its messages, with its value as set (untrimmed).
    pub fn var(&self, name: &'static str) -> Var<'_> {
        Var { name, value: self.0.get(name).map(String::as_str) }
    }
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
    env::ALL.into_iter().find(|known| known.eq_ignore_ascii_case(name))
}

/// Names only: the values include the API secret.
impl fmt::Debug for RawEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}
