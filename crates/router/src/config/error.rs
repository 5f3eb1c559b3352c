//! One line per bad variable, and the accumulator that lets every variable be checked before any
//! problem is reported.

/// One bad setting: the variable, what is wrong with its value, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}; fix: {fix}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
    pub fix: String,
}

pub(super) fn bad(var: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError { var: var.into(), problem: problem.into(), fix: fix.into() }
}

/// Collects problems while parsing goes on, so one bad variable never hides another.
#[derive(Debug, Default)]
pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    /// The valid value, or `None` with the problem recorded.
    pub fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// Records a cross-variable problem.
    pub fn check(&mut self, result: Result<(), ConfigError>) {
        self.take(result);
    }

    /// The assembled value if nothing was wrong. `value` is `None` only when a `take` failed, so
    /// an empty error list never comes with it.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ConfigError>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self.0),
        }
    }
}
