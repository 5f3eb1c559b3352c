//! Error formatting shared by modules that report foreign errors as text.

/// The error and all its sources, joined with ": " (reqwest and tera hide the cause otherwise).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
