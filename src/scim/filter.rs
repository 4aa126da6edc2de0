//! SCIM filters and attribute paths (RFC 7644 §3.4.2.2 and §3.5.2): a strict parser into a
//! small AST, and its evaluation against a resource held as JSON.
//!
//! Written here rather than taken from a crate: the grammar is short, the crates seen
//! (`scim-filter`, `scim_v2`) are lightly maintained, and the bridge needs its own case rules
//! and limits. Input is bounded ([`MAX_FILTER_LEN`], [`MAX_DEPTH`]) so that no filter can make
//! the parser recurse without bound; every malformed filter is an error, never a panic.

use std::cmp::Ordering;

use serde_json::Value;

/// Longest filter or path accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not` and value paths.
pub const MAX_DEPTH: usize = 32;

/// Why a filter or path was refused, in words (the text holds no attribute values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(message.into()))
}

/// `[URI ":"] ATTRNAME ["." subAttr]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN prefix, when written (`urn:ietf:params:scim:schemas:core:2.0:User`).
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

/// The comparison operators of RFC 7644 Table 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "lt" => Self::Lt,
            "ge" => Self::Ge,
            "le" => Self::Le,
            _ => return None,
        })
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath pr`
    Present(AttrPath),
    /// `attrPath op value`
    Compare(AttrPath, CompareOp, Value),
    /// `attrPath "[" filter "]"`: some element of the multi-valued attribute matches.
    ValuePath(AttrPath, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// A PATCH `path` (RFC 7644 §3.5.2): `attrPath` or `valuePath ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute; its `sub` is set for `name.givenName` and for `emails[...].value`.
    pub attr: AttrPath,
    /// The element filter of a value path.
    pub filter: Option<Filter>,
}

/// Parses a `filter` query parameter.
pub fn parse_filter(text: &str) -> Result<Filter, FilterError> {
    let mut parser = Parser::new(text)?;
    let filter = parser.or_expr(0, false)?;
    parser.skip_spaces();
    if !parser.at_end() {
        return err(format!(
            "unexpected text at offset {} of the filter",
            parser.pos
        ));
    }
    Ok(filter)
}

/// Parses a PATCH operation's `path`.
pub fn parse_path(text: &str) -> Result<PatchPath, FilterError> {
    let mut parser = Parser::new(text)?;
    parser.skip_spaces();
    let attr = parser.attr_path()?;
    let mut path = PatchPath { attr, filter: None };
    if parser.peek() == Some(b'[') {
        if path.attr.sub.is_some() {
            return err("a value filter cannot follow a sub-attribute");
        }
        parser.pos += 1;
        let filter = parser.or_expr(1, true)?;
        parser.skip_spaces();
        if parser.peek() != Some(b']') {
            return err("the value filter of the path is not closed with ]");
        }
        parser.pos += 1;
        path.filter = Some(filter);
        if parser.peek() == Some(b'.') {
            parser.pos += 1;
            let sub = parser.name()?;
            path.attr.sub = Some(sub);
        }
    }
    parser.skip_spaces();
    if !parser.at_end() {
        return err(format!(
            "unexpected text at offset {} of the path",
            parser.pos
        ));
    }
    Ok(path)
}

/// Splits `[URI ":"] name ["." sub]` written as one word (a PATCH value key such as
/// `name.givenName` or `urn:...:enterprise:2.0:User:department`).
pub fn parse_attr_path(text: &str) -> Result<AttrPath, FilterError> {
    let mut parser = Parser::new(text)?;
    let attr = parser.attr_path()?;
    if !parser.at_end() {
        return err("an attribute name holds an unexpected character");
    }
    Ok(attr)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-' | b'$')
}

fn valid_name(name: &str) -> bool {
    if name == "$ref" {
        return true;
    }
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, FilterError> {
        if text.len() > MAX_FILTER_LEN {
            return err(format!("longer than {MAX_FILTER_LEN} bytes"));
        }
        if text.trim().is_empty() {
            return err("empty");
        }
        Ok(Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        })
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// A run of name characters (letters, digits, `:._-$`).
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if is_word_byte(b)) {
            self.pos += 1;
        }
        // Only ASCII bytes were consumed, so both ends are character boundaries.
        self.text.get(start..self.pos).unwrap_or("")
    }

    fn name(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$'))
        {
            self.pos += 1;
        }
        let name = self.text.get(start..self.pos).unwrap_or("");
        if !valid_name(name) {
            return err("expected an attribute name");
        }
        Ok(name.to_owned())
    }

    fn attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let word = self.word();
        split_attr_word(word)
    }

    /// Looks at the next word without consuming it; returns it lowercased.
    fn peek_keyword(&self) -> String {
        let mut end = self.pos;
        while end < self.bytes.len() && self.bytes[end].is_ascii_alphabetic() {
            end += 1;
        }
        self.text
            .get(self.pos..end)
            .unwrap_or("")
            .to_ascii_lowercase()
    }

    /// `or` binds loosest, then `and`, then `not` and parentheses (RFC 7644 §3.4.2.2).
    fn or_expr(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, FilterError> {
        let mut left = self.and_expr(depth, in_value_path)?;
        loop {
            let save = self.pos;
            if !self.skip_spaces() {
                break;
            }
            if self.peek_keyword() == "or" {
                self.pos += 2;
                if !self.skip_spaces() {
                    return err("`or` must be followed by a space");
                }
                let right = self.and_expr(depth, in_value_path)?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                break;
            }
        }
        Ok(left)
    }

    fn and_expr(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, FilterError> {
        let mut left = self.unary(depth, in_value_path)?;
        loop {
            let save = self.pos;
            if !self.skip_spaces() {
                break;
            }
            if self.peek_keyword() == "and" {
                self.pos += 3;
                if !self.skip_spaces() {
                    return err("`and` must be followed by a space");
                }
                let right = self.unary(depth, in_value_path)?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                break;
            }
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, FilterError> {
        if depth >= MAX_DEPTH {
            return err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.skip_spaces();
        if self.peek_keyword() == "not" {
            let save = self.pos;
            self.pos += 3;
            self.skip_spaces();
            if self.peek() == Some(b'(') {
                let inner = self.group(depth + 1, in_value_path)?;
                return Ok(Filter::Not(Box::new(inner)));
            }
            self.pos = save;
        }
        if self.peek() == Some(b'(') {
            return self.group(depth + 1, in_value_path);
        }
        self.attr_expr(depth, in_value_path)
    }

    fn group(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, FilterError> {
        self.pos += 1; // '('
        let inner = self.or_expr(depth, in_value_path)?;
        self.skip_spaces();
        if self.peek() != Some(b')') {
            return err("a parenthesis is not closed");
        }
        self.pos += 1;
        Ok(inner)
    }

    fn attr_expr(&mut self, depth: usize, in_value_path: bool) -> Result<Filter, FilterError> {
        if self.at_end() {
            return err("the filter ends where an attribute was expected");
        }
        let path = self.attr_path()?;
        if self.peek() == Some(b'[') {
            if in_value_path {
                return err("value filters cannot be nested");
            }
            if path.sub.is_some() {
                return err("a value filter cannot follow a sub-attribute");
            }
            self.pos += 1;
            let inner = self.or_expr(depth + 1, true)?;
            self.skip_spaces();
            if self.peek() != Some(b']') {
                return err("a value filter is not closed with ]");
            }
            self.pos += 1;
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        if !self.skip_spaces() {
            return err("expected a space and an operator after the attribute");
        }
        let op_start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let op = self.text.get(op_start..self.pos).unwrap_or("");
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::parse(op) else {
            return err("unknown comparison operator");
        };
        if !self.skip_spaces() {
            return err("expected a space and a value after the operator");
        }
        let value = self.value()?;
        Ok(Filter::Compare(path, op, value))
    }

    /// A JSON literal: string, number, `true`, `false` or `null`.
    fn value(&mut self) -> Result<Value, FilterError> {
        match self.peek() {
            Some(b'"') => {
                let start = self.pos;
                self.pos += 1;
                loop {
                    match self.peek() {
                        None => return err("a string value is not closed"),
                        Some(b'\\') => self.pos += 2,
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => self.pos += 1,
                    }
                }
                let literal = self.text.get(start..self.pos).unwrap_or("");
                serde_json::from_str::<Value>(literal)
                    .map_err(|_| FilterError("a string value is not valid JSON".to_owned()))
            }
            Some(b) if b == b'-' || b.is_ascii_digit() => {
                let start = self.pos;
                while matches!(self.peek(), Some(b) if b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    self.pos += 1;
                }
                let literal = self.text.get(start..self.pos).unwrap_or("");
                match serde_json::from_str::<Value>(literal) {
                    Ok(number @ Value::Number(_)) => Ok(number),
                    _ => err("a number value is not valid"),
                }
            }
            _ => {
                let start = self.pos;
                while matches!(self.peek(), Some(b) if b.is_ascii_alphabetic()) {
                    self.pos += 1;
                }
                match self
                    .text
                    .get(start..self.pos)
                    .unwrap_or("")
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    _ => err("a value must be a quoted string, a number, true, false or null"),
                }
            }
        }
    }
}

fn split_attr_word(word: &str) -> Result<AttrPath, FilterError> {
    if word.is_empty() {
        return err("expected an attribute name");
    }
    let (uri, rest) = match word.rfind(':') {
        Some(at) => {
            let uri = &word[..at];
            if !uri.to_ascii_lowercase().starts_with("urn:") {
                return err("an attribute's schema prefix must be a URN");
            }
            (Some(uri.to_owned()), &word[at + 1..])
        }
        None => (None, word),
    };
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if !valid_name(name) || sub.is_some_and(|sub| !valid_name(sub)) {
        return err("expected an attribute name");
    }
    Ok(AttrPath {
        uri,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

/// Case rules: which attributes compare exactly (RFC 7643 `caseExact`). `parent` is the
/// multi-valued attribute a value filter runs over.
fn case_exact(parent: Option<&str>, name: &str, sub: Option<&str>) -> bool {
    let leaf = sub.unwrap_or(name);
    let owner = if sub.is_some() { Some(name) } else { parent };
    matches!(
        (owner, leaf),
        (None, "id" | "externalId") | (Some("members" | "groups"), "value") | (Some(_), "$ref")
    )
}

/// The key of `object` that equals `name` ignoring case (attribute names are
/// case-insensitive, RFC 7643 §2.1).
pub fn get_ci<'v>(object: &'v serde_json::Map<String, Value>, name: &str) -> Option<&'v Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// The values `path` reaches in `resource`: one per element of a multi-valued attribute.
/// A multi-valued complex attribute without a sub-attribute yields its elements' `value`.
fn values_at<'v>(resource: &'v Value, path: &AttrPath) -> Vec<&'v Value> {
    let Some(object) = resource.as_object() else {
        return Vec::new();
    };
    let container = match &path.uri {
        Some(uri) if uri.to_ascii_lowercase().contains(":extension:") => {
            match get_ci(object, uri).and_then(Value::as_object) {
                Some(extension) => extension,
                None => return Vec::new(),
            }
        }
        _ => object,
    };
    let Some(value) = get_ci(container, &path.name) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .filter_map(|item| match (&path.sub, item) {
            (Some(sub), Value::Object(map)) => get_ci(map, sub),
            (Some(_), _) => None,
            (None, Value::Object(map)) if value.is_array() => get_ci(map, "value"),
            (None, other) => Some(other),
        })
        .collect()
}

/// Whether one element of the multi-valued attribute `parent` matches a value filter.
pub fn matches_element(filter: &Filter, element: &Value, parent: &str) -> bool {
    matches_in(filter, element, Some(parent))
}

/// Whether `resource` (a JSON object) matches `filter`.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    matches_in(filter, resource, None)
}

fn matches_in(filter: &Filter, resource: &Value, parent: Option<&str>) -> bool {
    match filter {
        Filter::And(a, b) => matches_in(a, resource, parent) && matches_in(b, resource, parent),
        Filter::Or(a, b) => matches_in(a, resource, parent) || matches_in(b, resource, parent),
        Filter::Not(inner) => !matches_in(inner, resource, parent),
        Filter::Present(path) => values_at(resource, path).into_iter().any(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        }),
        Filter::Compare(path, op, expected) => {
            let exact = case_exact(parent, &path.name, path.sub.as_deref());
            values_at(resource, path)
                .into_iter()
                .any(|actual| compare(actual, *op, expected, exact))
                || (*op == CompareOp::Eq
                    && expected.is_null()
                    && values_at(resource, path).is_empty())
        }
        Filter::ValuePath(path, inner) => {
            let Some(object) = resource.as_object() else {
                return false;
            };
            let container = match &path.uri {
                Some(uri) if uri.to_ascii_lowercase().contains(":extension:") => {
                    match get_ci(object, uri).and_then(Value::as_object) {
                        Some(extension) => extension,
                        None => return false,
                    }
                }
                _ => object,
            };
            match get_ci(container, &path.name) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|item| matches_in(inner, item, Some(path.name.as_str()))),
                Some(item @ Value::Object(_)) => matches_in(inner, item, Some(path.name.as_str())),
                _ => false,
            }
        }
    }
}

fn compare(actual: &Value, op: CompareOp, expected: &Value, exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                CompareOp::Eq => a == e,
                CompareOp::Ne => a != e,
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                CompareOp::Gt => a > e,
                CompareOp::Ge => a >= e,
                CompareOp::Lt => a < e,
                CompareOp::Le => a <= e,
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let (Some(a), Some(e)) = (a.as_f64(), e.as_f64()) else {
                return false;
            };
            let order = a.partial_cmp(&e);
            match op {
                CompareOp::Eq => order == Some(Ordering::Equal),
                CompareOp::Ne => order != Some(Ordering::Equal),
                CompareOp::Gt => order == Some(Ordering::Greater),
                CompareOp::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
                CompareOp::Lt => order == Some(Ordering::Less),
                CompareOp::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
            }
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            CompareOp::Eq => a == e,
            CompareOp::Ne => a != e,
            _ => false,
        },
        // Entra sends booleans as strings; compare them as booleans.
        (Value::Bool(a), Value::String(e)) | (Value::String(e), Value::Bool(a)) => {
            let e = match e.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return op == CompareOp::Ne,
            };
            match op {
                CompareOp::Eq => *a == e,
                CompareOp::Ne => *a != e,
                _ => false,
            }
        }
        (_, Value::Null) => op == CompareOp::Ne && !actual.is_null(),
        _ => op == CompareOp::Ne,
    }
}

/// The value `userName eq "…"` (or `externalId eq`, `displayName eq`) asks for, when the
/// filter is exactly that: lets list queries skip a scan in the common case. Not needed for
/// correctness.
pub fn simple_equality<'f>(filter: &'f Filter, attribute: &str) -> Option<&'f str> {
    match filter {
        Filter::Compare(path, CompareOp::Eq, Value::String(value))
            if path.sub.is_none() && path.name.eq_ignore_ascii_case(attribute) =>
        {
            Some(value)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "userName": "Alice@Example.com",
            "externalId": "00u1",
            "active": true,
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "emails": [
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "a@home.example", "type": "home"}
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
        })
    }

    fn check(filter: &str) -> bool {
        matches(&parse_filter(filter).unwrap(), &user())
    }

    #[test]
    fn the_filters_idps_send() {
        assert!(check(r#"userName eq "alice@example.com""#));
        assert!(check(r#"USERNAME EQ "ALICE@EXAMPLE.COM""#));
        assert!(check(r#"externalId eq "00u1""#));
        assert!(!check(r#"externalId eq "00U1""#));
        assert!(check(r#"emails[value eq "a@home.example"]"#));
        assert!(check(r#"emails[type eq "work" and value co "alice"]"#));
        assert!(check(r#"emails.value eq "alice@example.com""#));
        assert!(check(r#"emails eq "alice@example.com""#));
        assert!(check(
            r#"name.givenName sw "Al" and name.familyName ew "th""#
        ));
        assert!(check(r#"userName eq "nobody" or active eq true"#));
        assert!(!check(r#"not (active eq true)"#));
        assert!(check(r#"title pr or userName pr"#));
        assert!(!check("title pr"));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "r&d""#
        ));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "alice@example.com""#
        ));
        assert!(check(r#"active eq "True""#));
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        // false and false or true = true; false and (false or true) = false.
        assert!(check(
            r#"userName eq "x" and userName eq "y" or active eq true"#
        ));
        assert!(!check(
            r#"userName eq "x" and (userName eq "y" or active eq true)"#
        ));
    }

    #[test]
    fn malformed_filters_are_errors() {
        for bad in [
            "",
            "   ",
            "userName",
            "userName eq",
            r#"userName xx "a""#,
            "userName eq alice",
            r#"userName eq "a"#,
            r#"(userName eq "a""#,
            r#"emails[value eq "a""#,
            r#"emails[type eq "a" and x[y eq "z"]]"#,
            r#"userName eq "a" and"#,
            r#"userName eq "a" extra"#,
            r#"1abc eq "a""#,
            r#"http://x:userName eq "a""#,
            r#"userName eq "a"and active eq true"#,
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn depth_and_length_are_bounded() {
        let deep = format!("{}userName pr{}", "(".repeat(100), ")".repeat(100));
        assert!(parse_filter(&deep).is_err());
        let long = format!(r#"userName eq "{}""#, "a".repeat(MAX_FILTER_LEN));
        assert!(parse_filter(&long).is_err());
    }

    #[test]
    fn patch_paths() {
        let path = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(path.attr.name, "members");
        assert!(path.filter.is_some());
        let path = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(path.attr.sub.as_deref(), Some("value"));
        let path = parse_path("name.givenName").unwrap();
        assert_eq!(
            (path.attr.name.as_str(), path.attr.sub.as_deref()),
            ("name", Some("givenName"))
        );
        let path =
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
                .unwrap();
        assert_eq!(
            path.attr.uri.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert!(parse_path("members[").is_err());
        assert!(parse_path("name.givenName[value eq \"x\"]").is_err());
        assert!(parse_path("").is_err());
    }

    fn arb_filter() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "[a-zA-Z][a-zA-Z0-9]{0,6}".prop_map(|a| format!("{a} pr")),
            (
                "[a-zA-Z][a-zA-Z0-9]{0,6}",
                "(eq|ne|co|sw|ew|gt|lt|ge|le)",
                "[ -~]{0,8}"
            )
                .prop_map(|(a, op, v)| format!("{a} {op} {}", serde_json::to_string(&v).unwrap())),
        ];
        leaf.prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
                inner.clone().prop_map(|a| format!("not ({a})")),
                inner.prop_map(|a| format!("({a})")),
            ]
        })
    }

    proptest! {
        /// Arbitrary text never panics the parser, the path parser or the evaluator.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
            if let Ok(filter) = parse_filter(&text) {
                let _ = matches(&filter, &user());
            }
            let _ = parse_path(&text);
        }

        /// Every filter the grammar generates parses, and evaluates without panicking.
        #[test]
        fn generated_filters_parse(text in arb_filter()) {
            let filter = parse_filter(&text);
            prop_assert!(filter.is_ok(), "{} -> {:?}", text, filter);
            let _ = matches(&filter.unwrap(), &user());
        }

        /// `not (f)` is the negation of `f`.
        #[test]
        fn not_negates(text in arb_filter()) {
            let f = parse_filter(&text).unwrap();
            let n = parse_filter(&format!("not ({text})")).unwrap();
            prop_assert_eq!(matches(&f, &user()), !matches(&n, &user()));
        }
    }
}
