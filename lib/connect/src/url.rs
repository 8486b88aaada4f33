//! Small URL helpers on top of `http::Uri`: percent-encoding query values,
//! appending query parameters, resolving the `next` links that APIs return,
//! and parsing RFC 8288 `Link` headers.
//!
//! Invariant: a next link is only followed when it points to the same origin
//! (scheme, host, port) as the configured URL, so that the connector's token
//! is never sent to another host.

use http::{HeaderMap, Uri};

/// Percent-encodes a query key or value (RFC 3986 unreserved characters kept).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `base` with `params` appended to its query string.
pub(crate) fn with_params(base: &Uri, params: &[(&str, String)]) -> Result<Uri, String> {
    let mut text = base.to_string();
    for (k, v) in params {
        text.push(if text.contains('?') { '&' } else { '?' });
        text.push_str(&encode(k));
        text.push('=');
        text.push_str(&encode(v));
    }
    text.parse()
        .map_err(|e| format!("cannot build URL {text:?}: {e}"))
}

/// Resolves a next link (absolute, `/path?query` or `?query`) against
/// `base`, refusing another origin.
pub(crate) fn resolve_same_origin(base: &Uri, link: &str) -> Result<Uri, String> {
    let link = link.trim();
    let uri: Uri = if link.starts_with("http://") || link.starts_with("https://") {
        link.parse()
            .map_err(|_| format!("next link {link:?} is not a valid URL"))?
    } else if link.starts_with('/') && !link.starts_with("//") {
        format!("{}{link}", origin(base))
            .parse()
            .map_err(|_| format!("next link {link:?} is not a valid URL"))?
    } else if link.starts_with('?') {
        format!("{}{}{link}", origin(base), base.path())
            .parse()
            .map_err(|_| format!("next link {link:?} is not a valid URL"))?
    } else {
        return Err(format!(
            "next link {link:?} is neither an absolute URL nor an absolute path"
        ));
    };
    if origin(&uri) != origin(base) {
        return Err(format!(
            "next link points to {}, not to the configured origin {}; refusing to send the token there",
            origin(&uri),
            origin(base)
        ));
    }
    Ok(uri)
}

/// `scheme://host[:port]` with the default port made explicit.
fn origin(u: &Uri) -> String {
    let scheme = u.scheme_str().unwrap_or("");
    let port = u
        .port_u16()
        .unwrap_or(if scheme == "http" { 80 } else { 443 });
    format!(
        "{scheme}://{}:{port}",
        u.host().unwrap_or("").to_ascii_lowercase()
    )
}

/// The target of the first `rel="next"` link in the `Link` headers.
pub(crate) fn link_next(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_link_next)
}

/// Parses one `Link` header value: `<url>; rel="next", <url2>; rel=self`.
fn parse_link_next(value: &str) -> Option<String> {
    let mut rest = value;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        rest = &rest[end + 1..];
        // Parameters run up to the next ',' outside quotes.
        let mut in_quotes = false;
        let mut params_end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    params_end = i;
                    break;
                }
                _ => {}
            }
        }
        let params = &rest[..params_end];
        let is_next = params.split(';').any(|p| {
            let mut kv = p.splitn(2, '=');
            let key = kv.next().unwrap_or("").trim();
            let val = kv.next().unwrap_or("").trim().trim_matches('"');
            key.eq_ignore_ascii_case("rel")
                && val
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &rest[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn link_header_forms() {
        assert_eq!(
            parse_link_next(
                r#"<https://a.example/x?after=1>; rel="self", <https://a.example/x?after=2>; rel="next""#
            ),
            Some("https://a.example/x?after=2".to_owned())
        );
        assert_eq!(
            parse_link_next("</p?page=3>;rel=next"),
            Some("/p?page=3".to_owned())
        );
        assert_eq!(
            parse_link_next(r#"<a>; title="x, y"; rel="prev", <b>; rel="last next""#),
            Some("b".to_owned())
        );
        assert_eq!(parse_link_next(r#"<a>; rel="self""#), None);
        assert_eq!(parse_link_next("garbage"), None);
    }

    #[test]
    fn link_next_reads_every_header() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::LINK,
            r#"<https://o/self>; rel="self""#.parse().unwrap(),
        );
        h.append(
            http::header::LINK,
            r#"<https://o/next>; rel="next""#.parse().unwrap(),
        );
        assert_eq!(link_next(&h), Some("https://o/next".to_owned()));
    }

    #[test]
    fn resolves_relative_links_and_refuses_other_origins() {
        let base = uri("https://api.example.com/v1/logs?limit=5");
        assert_eq!(
            resolve_same_origin(&base, "/v1/logs?after=abc").unwrap(),
            uri("https://api.example.com:443/v1/logs?after=abc")
        );
        assert_eq!(
            resolve_same_origin(&base, "?after=abc").unwrap(),
            uri("https://api.example.com:443/v1/logs?after=abc")
        );
        assert!(resolve_same_origin(&base, "https://API.example.com:443/v1/logs?x=1").is_ok());
        let e = resolve_same_origin(&base, "https://evil.example.net/steal").unwrap_err();
        assert!(e.contains("refusing"), "{e}");
        assert!(resolve_same_origin(&base, "http://api.example.com/v1").is_err());
        assert!(resolve_same_origin(&base, "//evil.example.net/x").is_err());
    }

    #[test]
    fn params_are_encoded() {
        let u = with_params(
            &uri("https://h/p?a=1"),
            &[("since", "2024-01-01T00:00:00.000+00:00".to_owned())],
        )
        .unwrap();
        assert_eq!(
            u.query(),
            Some("a=1&since=2024-01-01T00%3A00%3A00.000%2B00%3A00")
        );
    }
}
