//! Group-claim shapes: reads the JSON value of one `[groups]` source into raw IdP group names,
//! whatever common form the IdP uses (a list of strings, one string, a delimited string, an
//! object keyed by name as Zitadel's `urn:zitadel:iam:org:project:roles`, a list of objects
//! carrying the name in a field as SCIM-style `{"value": …, "display": …}` lists), or says why it
//! cannot. `docs/mapping.md` ("Group claim shapes") documents the rules for operators.
//!
//! A value the reader does not understand is an error, never an empty list: the caller then
//! treats the user's groups as unknown, so an unfamiliar shape can never demote anyone.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The fields an object in a list of groups is looked up in when `name_field` is not set:
/// exactly one of them must occur in the list's objects.
pub const NAME_FIELDS: [&str; 4] = ["name", "displayName", "value", "id"];

/// `[groups.shapes."<source>"]`: how one source's value is read, for the shapes that cannot be
/// told apart by looking at the value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceShape {
    /// A string holds several names separated by this text (`";"`, `","`, …); `" "` splits at
    /// any run of whitespace. Unset: a string is one name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// In a list of objects, the field holding the name. Unset: the one field of
    /// [`NAME_FIELDS`] the objects carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_field: Option<String>,
    /// What separates the segments of a group path (`/` for Keycloak `/a/b` and GitLab `a/b`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_delimiter: Option<String>,
}

/// The JSON type of a value, for logs and traces that must not show the value itself.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Why a source's value could not be read. Never contains claim values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The JSON type of the whole value.
    pub json_type: &'static str,
    /// What was not understood, in words.
    pub why: String,
}

/// Reads one source's value into trimmed, non-empty names (duplicates are removed later).
///
/// Errors: a boolean; a fractional number; an object whose members are lists (the names are
/// probably inside, e.g. Keycloak's `realm_access`); a list holding booleans, lists, or objects
/// whose name field cannot be found; and any value that yields no usable name at all, except
/// an empty object and, for a source with a `separator`, an empty string (both mean "no groups").
pub fn read(value: &Value, shape: &SourceShape) -> Result<Vec<String>, Unreadable> {
    let fail = |why: String| Unreadable {
        json_type: json_type(value),
        why,
    };
    let mut names = Vec::new();
    match value {
        Value::String(text) => {
            split(text, shape, &mut names);
            if names.is_empty() && shape.separator.is_none() {
                return Err(fail("the string holds no group name".to_owned()));
            }
        }
        Value::Number(number) => names.push(whole_number(number).map_err(fail)?),
        Value::Bool(_) => {
            return Err(fail(
                "a boolean is not a group name or a list of them".to_owned(),
            ));
        }
        Value::Null => {}
        Value::Object(map) => object_keys(map, &mut names).map_err(fail)?,
        Value::Array(items) => {
            read_list(items, shape, &mut names).map_err(fail)?;
            if names.is_empty() && !items.is_empty() {
                return Err(fail(format!(
                    "none of the list's {} item(s) holds a usable group name",
                    items.len()
                )));
            }
        }
    }
    Ok(names)
}

fn whole_number(number: &serde_json::Number) -> Result<String, String> {
    if number.is_i64() || number.is_u64() {
        Ok(number.to_string())
    } else {
        Err("a number with a fraction is not a group name".to_owned())
    }
}

fn split(text: &str, shape: &SourceShape, names: &mut Vec<String>) {
    let push = |part: &str, names: &mut Vec<String>| {
        let part = part.trim();
        if !part.is_empty() {
            names.push(part.to_owned());
        }
    };
    match shape.separator.as_deref() {
        Some(separator) if separator.trim().is_empty() => {
            text.split_whitespace().for_each(|p| push(p, names));
        }
        Some(separator) => text.split(separator).for_each(|p| push(p, names)),
        None => push(text, names),
    }
}

/// Zitadel's role claims: `{"role": {"<org id>": "<org domain>"}, …}`. Members holding lists
/// mean the object is a container (`realm_access`), not a name map.
fn object_keys(map: &Map<String, Value>, names: &mut Vec<String>) -> Result<(), String> {
    if map.values().any(Value::is_array) {
        return Err(
            "an object with lists inside: point groups.sources at the list itself \
             (e.g. `realm_access.roles`)"
                .to_owned(),
        );
    }
    let before = names.len();
    for key in map.keys() {
        let key = key.trim();
        if !key.is_empty() {
            names.push(key.to_owned());
        }
    }
    if names.len() == before && !map.is_empty() {
        return Err("none of the object's keys is a usable group name".to_owned());
    }
    Ok(())
}

/// The field that carries the name in a list's objects.
fn name_field<'a>(
    objects: &[&Map<String, Value>],
    shape: &'a SourceShape,
) -> Result<&'a str, String> {
    if let Some(field) = shape.name_field.as_deref() {
        return Ok(field);
    }
    let present: Vec<&'static str> = NAME_FIELDS
        .into_iter()
        .filter(|field| objects.iter().any(|o| o.contains_key(*field)))
        .collect();
    match present.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "a list of objects with none of the fields {}: set name_field in \
             groups.shapes for this source",
            NAME_FIELDS.join(", ")
        )),
        several => Err(format!(
            "a list of objects with several name fields ({}): set name_field in groups.shapes \
             for this source",
            several.join(", ")
        )),
    }
}

fn read_list(items: &[Value], shape: &SourceShape, names: &mut Vec<String>) -> Result<(), String> {
    let objects: Vec<&Map<String, Value>> = items.iter().filter_map(Value::as_object).collect();
    let field = if objects.is_empty() {
        None
    } else {
        Some(name_field(&objects, shape)?)
    };
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => split(text, shape, names),
            Value::Number(number) => {
                names.push(whole_number(number).map_err(|why| format!("item {index}: {why}"))?);
            }
            Value::Null => {}
            Value::Object(object) => {
                let field = field.unwrap_or("name");
                match object.get(field) {
                    Some(Value::String(text)) => {
                        let text = text.trim();
                        if !text.is_empty() {
                            names.push(text.to_owned());
                        }
                    }
                    Some(Value::Number(number)) => names
                        .push(whole_number(number).map_err(|why| format!("item {index}: {why}"))?),
                    Some(other) => {
                        return Err(format!(
                            "item {index}: field `{field}` is a {}, not a name",
                            json_type(other)
                        ));
                    }
                    None => return Err(format!("item {index}: an object without `{field}`")),
                }
            }
            Value::Bool(_) | Value::Array(_) => {
                return Err(format!(
                    "item {index} is a {}, not a group name",
                    json_type(item)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(value: Value) -> Result<Vec<String>, String> {
        read(&value, &SourceShape::default()).map_err(|e| format!("{}: {}", e.json_type, e.why))
    }

    fn with(value: Value, shape: SourceShape) -> Result<Vec<String>, String> {
        read(&value, &shape).map_err(|e| format!("{}: {}", e.json_type, e.why))
    }

    #[test]
    fn lists_and_single_strings() {
        assert_eq!(
            plain(json!([" a ", "b", null, 7])).unwrap(),
            ["a", "b", "7"]
        );
        assert_eq!(plain(json!("  writers ")).unwrap(), ["writers"]);
        assert_eq!(plain(json!("a;b")).unwrap(), ["a;b"]);
    }

    #[test]
    fn delimited_strings_need_a_separator() {
        let semi = SourceShape {
            separator: Some(";".into()),
            ..SourceShape::default()
        };
        assert_eq!(
            with(json!("a; b;;c "), semi.clone()).unwrap(),
            ["a", "b", "c"]
        );
        assert_eq!(
            with(json!(["a;b", "c"]), semi.clone()).unwrap(),
            ["a", "b", "c"]
        );
        // With a separator, an empty string means "no groups".
        assert_eq!(with(json!(""), semi).unwrap(), Vec::<String>::new());
        let space = SourceShape {
            separator: Some(" ".into()),
            ..SourceShape::default()
        };
        assert_eq!(with(json!(" a \t b\nc"), space).unwrap(), ["a", "b", "c"]);
        assert!(plain(json!("   ")).is_err());
    }

    #[test]
    fn objects_keyed_by_name() {
        let zitadel = json!({
            "forum-admin": {"310000000000000001": "example.com"},
            "forum-staff": {"310000000000000001": "example.com"}
        });
        assert_eq!(plain(zitadel).unwrap(), ["forum-admin", "forum-staff"]);
        assert_eq!(plain(json!({})).unwrap(), Vec::<String>::new());
        let keycloak = plain(json!({"roles": ["a"]})).unwrap_err();
        assert!(keycloak.contains("realm_access.roles"), "{keycloak}");
    }

    #[test]
    fn lists_of_objects_find_their_name_field() {
        assert_eq!(
            plain(json!([{"displayName": "Sales", "x": 1}, {"displayName": "Ops"}])).unwrap(),
            ["Sales", "Ops"]
        );
        assert_eq!(
            plain(json!([{"value": "g1", "display": "G"}])).unwrap(),
            ["g1"]
        );
        let ambiguous = plain(json!([{"name": "a", "id": "1"}])).unwrap_err();
        assert!(ambiguous.contains("name, id"), "{ambiguous}");
        assert!(plain(json!([{"label": "a"}])).is_err());
        let chosen = SourceShape {
            name_field: Some("id".into()),
            ..SourceShape::default()
        };
        assert_eq!(
            with(
                json!([{"name": "a", "id": "1"}, {"name": "b", "id": 2}]),
                chosen
            )
            .unwrap(),
            ["1", "2"]
        );
        // Every object must carry the field once it is decided.
        assert!(plain(json!([{"name": "a"}, {"other": "b"}])).is_err());
    }

    #[test]
    fn unreadable_values_name_their_type_only() {
        for (value, kind) in [
            (json!(true), "boolean"),
            (json!(1.5), "number"),
            (json!(["a", true]), "array"),
            (json!(["a", ["b"]]), "array"),
            (json!([null, ""]), "array"),
            (json!([{"name": {"x": "secret"}}]), "array"),
        ] {
            let error = read(&value, &SourceShape::default()).unwrap_err();
            assert_eq!(error.json_type, kind, "{value}");
            assert!(!error.why.contains("secret"), "{}", error.why);
        }
    }
}
