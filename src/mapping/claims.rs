//! Claim paths: the dotted notation operators use to point into the merged ID-token + userinfo
//! claims (OpenID Connect Core §5.1 standard claims plus whatever the IdP adds, e.g. Keycloak's
//! `realm_access.roles`), and the conversions from JSON claim values to the text and booleans a
//! DiscourseConnect payload carries.
//!
//! Syntax (documented in `docs/mapping.md`):
//! - segments are separated by `.`: `resource_access.discourse.roles`;
//! - a segment in double quotes may contain dots: `"https://example.com/claims".roles`
//!   (`\"` and `\\` escape inside quotes);
//! - a segment of digits applied to a list picks that element (0-based): `emails.0`;
//! - any other segment applied to a list is applied to every element: `groups.name` on
//!   `[{"name": "a"}, {"name": "b"}]` gives `["a", "b"]`;
//! - a path without quotes that is itself the name of a top-level claim means that claim, so
//!   namespaced claims such as `https://example.com/roles` work without quoting.

use serde_json::{Map, Value};

/// A parsed claim path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    /// The path as the operator wrote it (used in traces and messages).
    text: String,
    segments: Vec<String>,
    /// Whether any segment was quoted; an unquoted path may also name a top-level claim as is.
    quoted: bool,
}

impl ClaimPath {
    /// Parses a dotted path, explaining what is wrong with a malformed one.
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        let mut segments = Vec::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        if text.is_empty() {
            return Err("a claim path cannot be empty".to_owned());
        }
        loop {
            let mut segment = String::new();
            if chars.peek() == Some(&'"') {
                quoted = true;
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some(escaped) => segment.push(escaped),
                            None => break,
                        },
                        other => segment.push(other),
                    }
                }
                if !closed {
                    return Err(format!("unterminated quote in claim path `{text}`"));
                }
                if segment.is_empty() {
                    return Err(format!("empty quoted segment in claim path `{text}`"));
                }
                match chars.next() {
                    None => {
                        segments.push(segment);
                        break;
                    }
                    Some('.') => segments.push(segment),
                    Some(other) => {
                        return Err(format!(
                            "unexpected `{other}` after a quoted segment in claim path `{text}` \
                             (segments are separated by `.`)"
                        ));
                    }
                }
            } else {
                let mut ended = true;
                for c in chars.by_ref() {
                    if c == '.' {
                        ended = false;
                        break;
                    }
                    if c == '"' {
                        return Err(format!(
                            "a quote may only start a segment in claim path `{text}`"
                        ));
                    }
                    segment.push(c);
                }
                if segment.is_empty() {
                    return Err(format!(
                        "empty segment in claim path `{text}` (two dots, or a leading or trailing dot)"
                    ));
                }
                segments.push(segment);
                if ended {
                    break;
                }
            }
        }
        Ok(ClaimPath {
            text: text.to_owned(),
            segments,
            quoted,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The last segment, i.e. the claim's own name (`email` for `profile.email`).
    pub fn leaf(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or("")
    }

    /// Looks the path up. `null`, empty lists and paths that lead nowhere are all "absent".
    pub fn lookup(&self, claims: &Map<String, Value>) -> Option<Value> {
        if !self.quoted
            && let Some(value) = claims.get(&self.text)
        {
            return present(value.clone());
        }
        let (first, rest) = self.segments.split_first()?;
        let value = claims.get(first)?;
        walk(value, rest).and_then(present)
    }
}

impl std::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn present(value: Value) -> Option<Value> {
    match &value {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        _ => Some(value),
    }
}

fn walk(value: &Value, segments: &[String]) -> Option<Value> {
    let Some((segment, rest)) = segments.split_first() else {
        return Some(value.clone());
    };
    match value {
        Value::Object(map) => walk(map.get(segment)?, rest),
        Value::Array(items) => {
            if let Ok(index) = segment.parse::<usize>() {
                return walk(items.get(index)?, rest);
            }
            let mut collected = Vec::new();
            for item in items {
                match walk(item, segments) {
                    Some(Value::Array(inner)) => collected.extend(inner),
                    Some(Value::Null) | None => {}
                    Some(other) => collected.push(other),
                }
            }
            Some(Value::Array(collected))
        }
        _ => None,
    }
}

/// A claim value as the text of a single payload field: strings as they are, numbers and
/// booleans spelled out, a list of exactly one such value as that value. Lists and objects
/// cannot become a single field; the error says what the value was instead.
pub fn as_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Array(items) => match items.as_slice() {
            [single @ (Value::String(_) | Value::Number(_) | Value::Bool(_))] => as_text(single),
            _ => Err(format!(
                "is a list of {} values, not text (use a template with `join` to combine a list)",
                items.len()
            )),
        },
        Value::Object(_) => Err("is an object, not text".to_owned()),
        Value::Null => Err("is null".to_owned()),
    }
}

/// Reads a boolean the way IdPs send it: JSON `true`/`false`, or the strings `"true"`/`"false"`
/// in any case (AWS Cognito, some Okta and ADFS setups). Anything else is not a boolean.
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool_text(s),
        _ => None,
    }
}

/// The text form of [`as_bool`], also used for values produced by templates and constants.
pub fn parse_bool_text(text: &str) -> Option<bool> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("true") {
        Some(true)
    } else if trimmed.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn parses_valid_paths() {
        let cases: &[(&str, &[&str])] = &[
            ("email", &["email"]),
            ("realm_access.roles", &["realm_access", "roles"]),
            (
                "resource_access.discourse.roles",
                &["resource_access", "discourse", "roles"],
            ),
            (
                r#""https://example.com/claims".roles"#,
                &["https://example.com/claims", "roles"],
            ),
            (r#"a."b\"c""#, &["a", "b\"c"]),
            ("emails.0", &["emails", "0"]),
        ];
        for (text, expected) in cases {
            let path = ClaimPath::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(path.segments, *expected, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_paths() {
        for text in [
            "",
            "a..b",
            ".a",
            "a.",
            r#""unterminated"#,
            r#""a"b"#,
            r#"a"b""#,
            r#""""#,
        ] {
            assert!(ClaimPath::parse(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn looks_up_nested_objects_lists_and_namespaced_claims() {
        let claims = claims(json!({
            "email": "a@example.com",
            "realm_access": {"roles": ["offline_access", "forum-user"]},
            "resource_access": {"discourse": {"roles": ["moderator"]}},
            "https://example.com/roles": ["editor"],
            "https://example": {"com/x": 1},
            "emails": ["first@example.com", "second@example.com"],
            "memberOf": [{"name": "a"}, {"name": "b"}, {"other": 1}],
            "nothing": null,
            "empty": [],
        }));
        let cases: &[(&str, Option<Value>)] = &[
            ("email", Some(json!("a@example.com"))),
            (
                "realm_access.roles",
                Some(json!(["offline_access", "forum-user"])),
            ),
            (
                "resource_access.discourse.roles",
                Some(json!(["moderator"])),
            ),
            ("https://example.com/roles", Some(json!(["editor"]))),
            (r#""https://example.com/roles""#, Some(json!(["editor"]))),
            ("emails.1", Some(json!("second@example.com"))),
            ("emails.5", None),
            ("memberOf.name", Some(json!(["a", "b"]))),
            ("memberOf.missing", None),
            ("nothing", None),
            ("empty", None),
            ("email.deeper", None),
            ("absent", None),
        ];
        for (text, expected) in cases {
            let path = ClaimPath::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(path.lookup(&claims), *expected, "{text}");
        }
    }

    #[test]
    fn converts_values_to_text() {
        assert_eq!(as_text(&json!("x")), Ok("x".to_owned()));
        assert_eq!(as_text(&json!(42)), Ok("42".to_owned()));
        assert_eq!(as_text(&json!(true)), Ok("true".to_owned()));
        assert_eq!(as_text(&json!(["only"])), Ok("only".to_owned()));
        assert!(as_text(&json!(["a", "b"])).is_err());
        assert!(as_text(&json!({"a": 1})).is_err());
    }

    #[test]
    fn reads_booleans_and_boolean_strings() {
        let cases = [
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            (json!("true"), Some(true)),
            (json!("FALSE"), Some(false)),
            (json!(" True "), Some(true)),
            (json!("yes"), None),
            (json!(1), None),
            (json!(null), None),
        ];
        for (value, expected) in cases {
            assert_eq!(as_bool(&value), expected, "{value}");
        }
    }
}
