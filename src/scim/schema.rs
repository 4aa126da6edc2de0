//! The resource schemas the bridge serves (RFC 7643 §4 User and Group, §4.3 Enterprise User
//! extension) as one table of attribute definitions. The same table validates and
//! canonicalises incoming resources (names are case-insensitive, RFC 7643 §2.1) and renders
//! the `/Schemas`, `/ResourceTypes` and `/ServiceProviderConfig` discovery documents
//! (RFC 7644 §4), so what is advertised is what is accepted.

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::get_ci;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// RFC 7643 §2.3 data types used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Complex,
    Reference,
    Binary,
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadWrite,
    ReadOnly,
    WriteOnly,
    /// Set with the parent value, never changed on its own (RFC 7643 §7).
    Immutable,
}

/// One attribute definition.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub unique: bool,
    pub subs: &'static [Attr],
    pub description: &'static str,
}

const fn s(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind: Kind::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        unique: false,
        subs: &[],
        description,
    }
}

const fn b(name: &'static str, description: &'static str) -> Attr {
    Attr {
        kind: Kind::Boolean,
        ..s(name, description)
    }
}

const fn complex(name: &'static str, subs: &'static [Attr], description: &'static str) -> Attr {
    Attr {
        kind: Kind::Complex,
        subs,
        ..s(name, description)
    }
}

const fn multi(name: &'static str, subs: &'static [Attr], description: &'static str) -> Attr {
    Attr {
        kind: Kind::Complex,
        multi: true,
        subs,
        ..s(name, description)
    }
}

/// `value`, `display`, `type`, `primary`: the sub-attributes of most multi-valued attributes.
const PLAIN_MULTI: &[Attr] = &[
    s("value", "The value."),
    s("display", "A human-readable name."),
    s("type", "A label such as work or home."),
    b("primary", "Whether this is the primary value."),
];

const NAME: &[Attr] = &[
    s("formatted", "The full name."),
    s("familyName", "The family name."),
    s("givenName", "The given name."),
    s("middleName", "The middle name(s)."),
    s("honorificPrefix", "Honorific prefix."),
    s("honorificSuffix", "Honorific suffix."),
];

const ADDRESS: &[Attr] = &[
    s("formatted", "The full address."),
    s("streetAddress", "Street."),
    s("locality", "City."),
    s("region", "State or region."),
    s("postalCode", "Postal code."),
    s("country", "Country."),
    s("type", "A label such as work or home."),
    b("primary", "Whether this is the primary address."),
];

const USER_GROUPS: &[Attr] = &[
    Attr {
        mutability: Mutability::ReadOnly,
        case_exact: true,
        ..s("value", "The group's id.")
    },
    Attr {
        kind: Kind::Reference,
        mutability: Mutability::ReadOnly,
        case_exact: true,
        ..s("$ref", "The group's URI.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..s("display", "The group's display name.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..s("type", "direct")
    },
];

/// The User attributes (RFC 7643 §4.1).
pub const USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..s(
            "userName",
            "Unique identifier of the user, e.g. the sign-in name.",
        )
    },
    complex("name", NAME, "The components of the user's name."),
    s("displayName", "The name shown to others."),
    s("nickName", "The casual name."),
    Attr {
        kind: Kind::Reference,
        ..s("profileUrl", "A URI of the user's profile.")
    },
    s("title", "The user's title."),
    s("userType", "The relationship to the organisation."),
    s("preferredLanguage", "Preferred written or spoken language."),
    s("locale", "Default location for localisation."),
    s("timezone", "Time zone in IANA form."),
    b(
        "active",
        "Whether the user may sign in; false logs the user out of Discourse.",
    ),
    Attr {
        mutability: Mutability::WriteOnly,
        ..s(
            "password",
            "Accepted and discarded: the bridge never stores passwords.",
        )
    },
    multi(
        "emails",
        PLAIN_MULTI,
        "Email addresses; the primary one is sent to Discourse.",
    ),
    multi("phoneNumbers", PLAIN_MULTI, "Phone numbers."),
    multi("ims", PLAIN_MULTI, "Instant messaging addresses."),
    multi("photos", PLAIN_MULTI, "Photo URLs."),
    multi("addresses", ADDRESS, "Physical addresses."),
    Attr {
        mutability: Mutability::ReadOnly,
        ..multi(
            "groups",
            USER_GROUPS,
            "The groups the user belongs to (set through Groups).",
        )
    },
    multi("entitlements", PLAIN_MULTI, "Entitlements."),
    multi("roles", PLAIN_MULTI, "Roles."),
    multi("x509Certificates", PLAIN_MULTI, "Certificates."),
];

const MANAGER: &[Attr] = &[
    s("value", "The manager's id."),
    Attr {
        kind: Kind::Reference,
        ..s("$ref", "The manager's URI.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..s("displayName", "The manager's name.")
    },
];

/// The Enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber", "Employee number."),
    s("costCenter", "Cost center."),
    s("organization", "Organisation."),
    s("division", "Division."),
    s("department", "Department."),
    complex("manager", MANAGER, "The user's manager."),
];

const MEMBERS: &[Attr] = &[
    Attr {
        mutability: Mutability::Immutable,
        case_exact: true,
        ..s("value", "The member's id.")
    },
    Attr {
        kind: Kind::Reference,
        mutability: Mutability::Immutable,
        case_exact: true,
        ..s("$ref", "The member's URI.")
    },
    Attr {
        mutability: Mutability::Immutable,
        ..s("display", "The member's name.")
    },
    Attr {
        mutability: Mutability::Immutable,
        ..s("type", "User or Group.")
    },
];

/// The Group attributes (RFC 7643 §4.2).
pub const GROUP_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..s(
            "displayName",
            "The group's name; the groups claim of its members.",
        )
    },
    multi("members", MEMBERS, "The users in the group."),
];

/// Which resource type a document describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
}

impl Resource {
    pub fn core_schema(self) -> &'static str {
        match self {
            Self::User => USER_SCHEMA,
            Self::Group => GROUP_SCHEMA,
        }
    }

    pub fn attrs(self) -> &'static [Attr] {
        match self {
            Self::User => USER_ATTRS,
            Self::Group => GROUP_ATTRS,
        }
    }

    /// The extension schema this type accepts, if any.
    pub fn extension(self) -> Option<(&'static str, &'static [Attr])> {
        match self {
            Self::User => Some((ENTERPRISE_SCHEMA, ENTERPRISE_ATTRS)),
            Self::Group => None,
        }
    }

    /// `User` or `Group`.
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    /// `Users` or `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "Users",
            Self::Group => "Groups",
        }
    }
}

/// The definition named `name` (case-insensitive) in `attrs`.
pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs
        .iter()
        .find(|attr| attr.name.eq_ignore_ascii_case(name))
}

/// `true`/`false`, also as the strings Entra ID sends (`"True"`, `"False"`).
pub fn coerce_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Checks `value` against `attr` and returns it with canonical attribute names and real
/// booleans. Read-only attributes are the caller's business. `where_` names the attribute in
/// messages.
pub fn canonical_value(attr: &Attr, value: &Value, where_: &str) -> Result<Value, ScimError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if attr.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        let single = Attr {
            multi: false,
            ..*attr
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let item = canonical_value(&single, item, where_)?;
            if !item.is_null() {
                out.push(item);
            }
        }
        return Ok(Value::Array(out));
    }
    match attr.kind {
        Kind::Boolean => coerce_bool(value)
            .map(Value::Bool)
            .ok_or_else(|| ScimError::invalid_value(format!("{where_} must be a boolean"))),
        Kind::String | Kind::Reference | Kind::Binary => match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(ScimError::invalid_value(format!(
                "{where_} must be a string"
            ))),
        },
        Kind::Complex => {
            let Value::Object(map) = value else {
                return Err(ScimError::invalid_value(format!(
                    "{where_} must be an object"
                )));
            };
            let mut out = Map::new();
            for (key, sub_value) in map {
                let Some(sub) = find(attr.subs, key) else {
                    return Err(ScimError::invalid_value(format!(
                        "{where_}.{key} is not an attribute of the schema"
                    )));
                };
                let sub_value = canonical_value(sub, sub_value, &format!("{where_}.{}", sub.name))?;
                if !sub_value.is_null() {
                    out.insert(sub.name.to_owned(), sub_value);
                }
            }
            Ok(Value::Object(out))
        }
    }
}

/// The `schemas` a resource carries: its core schema, and the extension when it holds one.
pub fn schemas_of(resource: Resource, object: &Map<String, Value>) -> Value {
    let mut schemas = vec![Value::from(resource.core_schema())];
    if let Some((urn, _)) = resource.extension()
        && object.contains_key(urn)
    {
        schemas.push(Value::from(urn));
    }
    Value::Array(schemas)
}

/// Validates a full resource body (POST or PUT) and returns its writable attributes with
/// canonical names. `id`, `meta` and other read-only attributes are ignored (RFC 7643 §2.2);
/// an attribute outside the schema is refused.
pub fn canonical_resource(
    resource: Resource,
    body: &Value,
) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    match get_ci(body, "schemas") {
        Some(Value::Array(schemas)) => {
            let known = |urn: &str| {
                urn.eq_ignore_ascii_case(resource.core_schema())
                    || resource
                        .extension()
                        .is_some_and(|(ext, _)| urn.eq_ignore_ascii_case(ext))
            };
            if !schemas.iter().all(|s| s.as_str().is_some_and(known)) {
                return Err(ScimError::invalid_value(format!(
                    "schemas may only name {} and its extension",
                    resource.core_schema()
                )));
            }
        }
        Some(_) => return Err(ScimError::invalid_syntax("schemas must be an array")),
        None => {
            return Err(ScimError::invalid_value("schemas is required"));
        }
    }
    let mut out = Map::new();
    for (key, value) in body {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k))
        {
            continue;
        }
        if key.eq_ignore_ascii_case("externalId") {
            match value {
                Value::String(_) => {
                    out.insert("externalId".to_owned(), value.clone());
                }
                Value::Null => {}
                _ => return Err(ScimError::invalid_value("externalId must be a string")),
            }
            continue;
        }
        if let Some((urn, ext_attrs)) = resource.extension()
            && key.eq_ignore_ascii_case(urn)
        {
            let Value::Object(ext) = value else {
                return Err(ScimError::invalid_value(format!("{urn} must be an object")));
            };
            let mut ext_out = Map::new();
            for (ext_key, ext_value) in ext {
                if ext_key.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let Some(attr) = find(ext_attrs, ext_key) else {
                    return Err(ScimError::invalid_value(format!(
                        "{ext_key} is not an attribute of {urn}"
                    )));
                };
                let canonical = canonical_value(attr, ext_value, attr.name)?;
                if !canonical.is_null() {
                    ext_out.insert(attr.name.to_owned(), canonical);
                }
            }
            if !ext_out.is_empty() {
                out.insert(urn.to_owned(), Value::Object(ext_out));
            }
            continue;
        }
        let Some(attr) = find(resource.attrs(), key) else {
            return Err(ScimError::invalid_value(format!(
                "{key} is not an attribute of {}",
                resource.core_schema()
            )));
        };
        if attr.mutability == Mutability::ReadOnly {
            continue;
        }
        let canonical = canonical_value(attr, value, attr.name)?;
        if canonical.is_null() || attr.mutability == Mutability::WriteOnly {
            continue;
        }
        out.insert(attr.name.to_owned(), canonical);
    }
    check_required(resource, &out)?;
    Ok(out)
}

/// The required attributes are present and non-empty strings.
pub fn check_required(resource: Resource, object: &Map<String, Value>) -> Result<(), ScimError> {
    for attr in resource.attrs().iter().filter(|a| a.required) {
        match object.get(attr.name) {
            Some(Value::String(text)) if !text.trim().is_empty() => {}
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "{} is required",
                    attr.name
                )));
            }
        }
    }
    Ok(())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::String => "string",
        Kind::Boolean => "boolean",
        Kind::Complex => "complex",
        Kind::Reference => "reference",
        Kind::Binary => "binary",
    }
}

fn attr_json(attr: &Attr) -> Value {
    let mut doc = json!({
        "name": attr.name,
        "type": kind_name(attr.kind),
        "multiValued": attr.multi,
        "description": attr.description,
        "required": attr.required,
        "caseExact": attr.case_exact,
        "mutability": match attr.mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
            Mutability::WriteOnly => "writeOnly",
            Mutability::Immutable => "immutable",
        },
        "returned": match attr.mutability {
            Mutability::WriteOnly => "never",
            _ => "default",
        },
        "uniqueness": if attr.unique { "server" } else { "none" },
    });
    if let Some(map) = doc.as_object_mut() {
        if attr.kind == Kind::Complex {
            map.insert(
                "subAttributes".to_owned(),
                Value::Array(attr.subs.iter().map(attr_json).collect()),
            );
        }
        if attr.kind == Kind::Reference {
            map.insert(
                "referenceTypes".to_owned(),
                json!(if attr.name == "$ref" {
                    vec!["User", "Group"]
                } else {
                    vec!["external"]
                }),
            );
        }
    }
    doc
}

fn schema_doc(id: &str, name: &str, description: &str, attrs: &[Attr], base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{id}"),
        },
    })
}

/// The three schema documents (`GET /Schemas`), `base` being the SCIM base URL.
pub fn schemas(base: &str) -> Vec<Value> {
    vec![
        schema_doc(USER_SCHEMA, "User", "User account", USER_ATTRS, base),
        schema_doc(GROUP_SCHEMA, "Group", "Group", GROUP_ATTRS, base),
        schema_doc(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            "Enterprise User",
            ENTERPRISE_ATTRS,
            base,
        ),
    ]
}

/// The two resource types (`GET /ResourceTypes`).
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User account",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

/// `GET /ServiceProviderConfig` (RFC 7643 §5). `max_results` is the largest page.
pub fn service_provider_config(base: &str, max_results: usize, docs_url: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": docs_url,
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A static bearer token from [scim] token or token_file",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_names_and_entra_booleans() {
        let body = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
            "USERNAME": "alice",
            "Active": "False",
            "name": {"GivenName": "Alice"},
            "emails": [{"Value": "a@example.com", "primary": "true"}],
            "password": "secret",
            "id": "ignored",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "R&D"},
        });
        let out = canonical_resource(Resource::User, &body).unwrap();
        assert_eq!(out["userName"], "alice");
        assert_eq!(out["active"], false);
        assert_eq!(out["name"]["givenName"], "Alice");
        assert_eq!(out["emails"][0]["primary"], true);
        assert!(!out.contains_key("password") && !out.contains_key("id"));
        assert_eq!(out[ENTERPRISE_SCHEMA]["department"], "R&D");
    }

    #[test]
    fn refuses_unknown_attributes_and_wrong_types() {
        for body in [
            json!({"schemas": [USER_SCHEMA], "userName": "a", "shoeSize": "42"}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "name": {"nick": "x"}}),
            json!({"schemas": [USER_SCHEMA], "userName": 7}),
            json!({"schemas": [USER_SCHEMA], "userName": "a", "active": "maybe"}),
            json!({"schemas": [USER_SCHEMA]}),
            json!({"userName": "a"}),
            json!({"schemas": ["urn:x"], "userName": "a"}),
            json!([1]),
        ] {
            assert!(canonical_resource(Resource::User, &body).is_err(), "{body}");
        }
    }
}
