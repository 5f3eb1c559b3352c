//! Reading one cookie out of `Cookie` request headers (the router's operator session, the
//! emulator's login cookie).

/// The value of cookie `name` in the given `Cookie` header values, if present.
pub fn value<'a>(cookie_headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    cookie_headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_named_cookie_in_any_header() {
        let headers = ["a=1; b=2", "c=3"];
        assert_eq!(super::value(headers, "b"), Some("2"));
        assert_eq!(super::value(headers, "c"), Some("3"));
        assert_eq!(super::value(headers, "d"), None);
        assert_eq!(super::value(["ab=1"], "b"), None);
    }
}
