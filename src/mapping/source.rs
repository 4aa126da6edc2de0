//! Where a payload field's value comes from: a claim path, a minijinja template over the claims,
//! a constant, or a list of those tried in order. This module holds the operator-facing TOML
//! shape ([`Source`]), its compiled form ([`CompiledSource`]) and the evaluation that yields
//! candidate values with the rule that produced each (for `explain`).

use std::fmt;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::claims::{self, ClaimPath};
use crate::problem::ConfigProblem;

/// One way to obtain a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Single {
    /// A claim path (`"email"`, `"realm_access.roles"`, or `{ claim = "..." }`).
    Claim(String),
    /// A minijinja template over the claims (`{ template = "{{ given_name }}" }`).
    Template(String),
    /// A constant (`{ value = "en" }`, or a bare `true`/number).
    Value(String),
}

/// A field's source as written in the config: one way, or a list of ways tried in order.
/// An empty list means "never send this field".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    One(Single),
    FirstOf(Vec<Single>),
}

impl Source {
    /// A claim path source.
    pub fn claim(path: &str) -> Source {
        Source::One(Single::Claim(path.to_owned()))
    }

    /// A source that never yields anything.
    pub fn none() -> Source {
        Source::FirstOf(Vec::new())
    }

    /// The alternatives in order.
    pub fn alternatives(&self) -> &[Single] {
        match self {
            Source::One(single) => std::slice::from_ref(single),
            Source::FirstOf(list) => list,
        }
    }
}

const EXPECTED: &str = "a claim path string, { claim = \"...\" }, { template = \"...\" }, \
                        { value = ... }, a boolean or number constant, or a list of those";

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SourceVisitor { nested: false })
    }
}

/// Accepts every shape of [`Source`]; `nested` is set inside a list, where lists are refused.
struct SourceVisitor {
    nested: bool,
}

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = Source;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Source, E> {
        Ok(Source::One(Single::Claim(v.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Source, E> {
        Ok(Source::One(Single::Value(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Source, E> {
        Ok(Source::One(Single::Value(v.to_string())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Source, E> {
        Ok(Source::One(Single::Value(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Source, E> {
        Ok(Source::One(Single::Value(v.to_string())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Source, A::Error> {
        if self.nested {
            return Err(de::Error::custom(
                "a list of sources cannot contain another list",
            ));
        }
        let mut list = Vec::new();
        while let Some(SingleSeed(single)) = seq.next_element()? {
            list.push(single);
        }
        Ok(Source::FirstOf(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Source, A::Error> {
        let mut found: Option<Single> = None;
        while let Some(key) = map.next_key::<String>()? {
            let single = match key.as_str() {
                "claim" => Single::Claim(map.next_value::<String>()?),
                "template" => Single::Template(map.next_value::<String>()?),
                "value" => Single::Value(map.next_value::<Constant>()?.0),
                other => {
                    return Err(de::Error::unknown_field(
                        other,
                        &["claim", "template", "value"],
                    ));
                }
            };
            if found.is_some() {
                return Err(de::Error::custom(
                    "a source table takes exactly one of `claim`, `template` or `value`; \
                     use a list for fallbacks",
                ));
            }
            found = Some(single);
        }
        found.map(Source::One).ok_or_else(|| {
            de::Error::custom("a source table needs one of `claim`, `template` or `value`")
        })
    }
}

/// One element of a fallback list.
struct SingleSeed(Single);

impl<'de> Deserialize<'de> for SingleSeed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(SourceVisitor { nested: true })? {
            Source::One(single) => Ok(SingleSeed(single)),
            Source::FirstOf(_) => Err(de::Error::custom(
                "a list of sources cannot contain another list",
            )),
        }
    }
}

/// A constant's value: text, or a boolean or number spelled out.
struct Constant(String);

impl<'de> Deserialize<'de> for Constant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConstantVisitor;
        impl Visitor<'_> for ConstantVisitor {
            type Value = Constant;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, boolean or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Constant, E> {
                Ok(Constant(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Constant, E> {
                Ok(Constant(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Constant, E> {
                Ok(Constant(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Constant, E> {
                Ok(Constant(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Constant, E> {
                Ok(Constant(v.to_string()))
            }
        }
        deserializer.deserialize_any(ConstantVisitor)
    }
}

impl Serialize for Single {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Single::Claim(path) => serializer.serialize_str(path),
            Single::Template(template) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("template", template)?;
                map.end()
            }
            Single::Value(value) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("value", value)?;
                map.end()
            }
        }
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Source::One(single) => single.serialize(serializer),
            Source::FirstOf(list) => {
                let mut seq = serializer.serialize_seq(Some(list.len()))?;
                for single in list {
                    seq.serialize_element(single)?;
                }
                seq.end()
            }
        }
    }
}

/// The template engine shared by every compiled source: plain text output (no HTML escaping)
/// and chainable undefined values, so `{{ address.locality }}` renders empty when `address` is
/// missing instead of failing.
pub fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env
}

/// A compiled alternative.
#[derive(Debug, Clone)]
enum Alternative {
    Claim(ClaimPath),
    /// Name of the template in the environment, and the claim paths it refers to.
    Template {
        name: String,
        variables: Vec<ClaimPath>,
    },
    Value(String),
}

/// A compiled [`Source`]: each alternative with the dotted config key that names it.
#[derive(Debug, Clone)]
pub struct CompiledSource {
    alternatives: Vec<(String, Alternative)>,
}

/// Why an alternative yielded nothing (or what it yielded), for traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Dotted config key of the alternative, e.g. `mapping.name[1]`.
    pub rule: String,
    /// Human description of the alternative, e.g. "claim `name`".
    pub origin: String,
    /// The produced text, or why there was none.
    pub result: Result<String, String>,
}

impl CompiledSource {
    /// Compiles a source found at `key`, adding its templates to `env`.
    pub fn compile(
        key: &str,
        source: &Source,
        env: &mut Environment<'static>,
        problems: &mut Vec<ConfigProblem>,
    ) -> CompiledSource {
        let list = matches!(source, Source::FirstOf(_));
        let mut alternatives = Vec::new();
        for (index, single) in source.alternatives().iter().enumerate() {
            let alt_key = if list {
                format!("{key}[{index}]")
            } else {
                key.to_owned()
            };
            match single {
                Single::Claim(path) => match ClaimPath::parse(path) {
                    Ok(path) => alternatives.push((alt_key, Alternative::Claim(path))),
                    Err(message) => problems.push(ConfigProblem::new(alt_key, message)),
                },
                Single::Template(text) => {
                    match compile_template(&alt_key, text, env) {
                        Ok(variables) => alternatives.push((
                            alt_key.clone(),
                            Alternative::Template {
                                name: alt_key,
                                variables,
                            },
                        )),
                        Err(message) => problems.push(ConfigProblem::new(alt_key, message)),
                    };
                }
                Single::Value(value) => {
                    alternatives.push((alt_key, Alternative::Value(value.clone())))
                }
            }
        }
        CompiledSource { alternatives }
    }

    /// The claim of this source that `claims` lack, when that matters: alternatives are tried
    /// in order, so the first one decides. When its claims are present it settles the source;
    /// when one is absent, another claim set (userinfo) could still supply it and change the
    /// outcome. Later alternatives never matter here.
    pub fn first_absent_claim(&self, claims: &Map<String, Value>) -> Option<&ClaimPath> {
        match self
            .alternatives
            .first()
            .map(|(_, alternative)| alternative)
        {
            Some(Alternative::Claim(path)) => path.lookup(claims).is_none().then_some(path),
            Some(Alternative::Template { variables, .. }) => {
                variables.iter().find(|path| path.lookup(claims).is_none())
            }
            Some(Alternative::Value(_)) | None => None,
        }
    }

    /// Whether the source can ever produce a value.
    pub fn is_empty(&self) -> bool {
        self.alternatives.is_empty()
    }

    /// Claim paths this source reads (directly or from templates), and whether it has a
    /// constant; used for warnings about mutable identifiers.
    pub fn claim_paths(&self) -> impl Iterator<Item = &ClaimPath> {
        self.alternatives.iter().flat_map(|(_, alt)| match alt {
            Alternative::Claim(path) => std::slice::from_ref(path),
            Alternative::Template { variables, .. } => variables.as_slice(),
            Alternative::Value(_) => &[],
        })
    }

    /// Whether any alternative is a constant.
    pub fn has_constant(&self) -> bool {
        self.alternatives
            .iter()
            .any(|(_, alt)| matches!(alt, Alternative::Value(_)))
    }

    /// Every alternative's result, in order. Empty or whitespace-only text counts as absent.
    pub fn candidates(
        &self,
        env: &Environment<'static>,
        claims: &Map<String, Value>,
    ) -> Vec<Candidate> {
        self.alternatives
            .iter()
            .map(|(rule, alt)| {
                let (origin, result) = evaluate(alt, env, claims);
                let result = result.and_then(|text| {
                    if text.trim().is_empty() {
                        Err("is empty".to_owned())
                    } else {
                        Ok(text)
                    }
                });
                Candidate {
                    rule: rule.clone(),
                    origin,
                    result,
                }
            })
            .collect()
    }
}

fn compile_template(
    name: &str,
    text: &str,
    env: &mut Environment<'static>,
) -> Result<Vec<ClaimPath>, String> {
    env.add_template_owned(name.to_owned(), text.to_owned())
        .map_err(|e| format!("template error: {}", describe_template_error(&e)))?;
    let template = env
        .get_template(name)
        .map_err(|e| format!("template error: {}", describe_template_error(&e)))?;
    let mut names: Vec<String> = template.undeclared_variables(true).into_iter().collect();
    names.sort();
    Ok(names
        .iter()
        .filter_map(|name| ClaimPath::parse(name).ok())
        .collect())
}

fn describe_template_error(error: &minijinja::Error) -> String {
    let mut text = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

fn evaluate(
    alt: &Alternative,
    env: &Environment<'static>,
    claims: &Map<String, Value>,
) -> (String, Result<String, String>) {
    match alt {
        Alternative::Claim(path) => {
            let origin = format!("claim `{path}`");
            let result = match path.lookup(claims) {
                Some(value) => claims::as_text(&value),
                None => Err("is absent".to_owned()),
            };
            (origin, result)
        }
        Alternative::Template { name, variables } => {
            let origin = "template".to_owned();
            if !variables.is_empty() && variables.iter().all(|v| v.lookup(claims).is_none()) {
                return (origin, Err("refers only to absent claims".to_owned()));
            }
            let result = env
                .get_template(name)
                .and_then(|template| template.render(template_context(claims)))
                .map(|text| text.trim().to_owned())
                .map_err(|e| format!("failed to render: {}", describe_template_error(&e)));
            (origin, result)
        }
        Alternative::Value(value) => ("constant".to_owned(), Ok(value.clone())),
    }
}

/// Templates see every claim as a variable, plus `claims` (the whole map) so that claims whose
/// names are not identifiers can be reached: `{{ claims["https://example.com/team"] }}`.
fn template_context(claims: &Map<String, Value>) -> minijinja::Value {
    let mut context = claims.clone();
    context
        .entry("claims".to_owned())
        .or_insert_with(|| Value::Object(claims.clone()));
    minijinja::Value::from(minijinja::value::Serde(context))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(json: Value) -> Result<Source, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn deserializes_every_shape() {
        let cases = [
            (json!("email"), Source::claim("email")),
            (
                json!({"claim": "a.b"}),
                Source::One(Single::Claim("a.b".to_owned())),
            ),
            (
                json!({"template": "{{ x }}"}),
                Source::One(Single::Template("{{ x }}".to_owned())),
            ),
            (
                json!({"value": "en"}),
                Source::One(Single::Value("en".to_owned())),
            ),
            (
                json!({"value": true}),
                Source::One(Single::Value("true".to_owned())),
            ),
            (json!(true), Source::One(Single::Value("true".to_owned()))),
            (json!(7), Source::One(Single::Value("7".to_owned()))),
            (
                json!(["name", {"template": "{{ a }}"}, {"value": "x"}]),
                Source::FirstOf(vec![
                    Single::Claim("name".to_owned()),
                    Single::Template("{{ a }}".to_owned()),
                    Single::Value("x".to_owned()),
                ]),
            ),
            (json!([]), Source::none()),
        ];
        for (input, expected) in cases {
            let parsed = parse(input.clone()).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed, expected, "{input}");
            let round_trip: Source =
                serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
            assert_eq!(round_trip, expected, "round trip of {input}");
        }
    }

    #[test]
    fn refuses_malformed_shapes() {
        for input in [
            json!({"claim": "a", "value": "b"}),
            json!({}),
            json!({"clam": "a"}),
            json!([["nested"]]),
            json!(null),
        ] {
            assert!(parse(input.clone()).is_err(), "{input} should be refused");
        }
    }

    fn compile(source: Source) -> (CompiledSource, Environment<'static>, Vec<ConfigProblem>) {
        let mut env = new_environment();
        let mut problems = Vec::new();
        let compiled = CompiledSource::compile("mapping.name", &source, &mut env, &mut problems);
        (compiled, env, problems)
    }

    #[test]
    fn reports_template_and_path_errors_with_keys() {
        let (_, _, problems) = compile(Source::FirstOf(vec![
            Single::Claim("a..b".to_owned()),
            Single::Template("{{ unclosed".to_owned()),
            Single::Claim("fine".to_owned()),
        ]));
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["mapping.name[0]", "mapping.name[1]"]);
        assert!(problems[1].message.starts_with("template error"));
    }

    #[test]
    fn evaluates_fallbacks_in_order() {
        let (compiled, env, problems) = compile(Source::FirstOf(vec![
            Single::Claim("name".to_owned()),
            Single::Template("{{ given_name }} {{ family_name }}".to_owned()),
            Single::Template("{{ nickname }}".to_owned()),
            Single::Value("Anonymous".to_owned()),
        ]));
        assert!(problems.is_empty());
        let claims = json!({"given_name": "Ada", "name": ""});
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        let results: Vec<_> = compiled
            .candidates(&env, &claims)
            .into_iter()
            .map(|c| c.result)
            .collect();
        assert_eq!(
            results,
            [
                Err("is empty".to_owned()),
                Ok("Ada".to_owned()),
                Err("refers only to absent claims".to_owned()),
                Ok("Anonymous".to_owned()),
            ]
        );
    }

    #[test]
    fn templates_reach_nested_and_namespaced_claims() {
        let (compiled, env, problems) = compile(Source::One(Single::Template(
            r#"{{ address.locality }}/{{ claims["https://x.example/team"] | upper }}"#.to_owned(),
        )));
        assert!(problems.is_empty());
        let Value::Object(claims) =
            json!({"address": {"locality": "Oslo"}, "https://x.example/team": "blue"})
        else {
            unreachable!()
        };
        let candidates = compiled.candidates(&env, &claims);
        assert_eq!(candidates[0].result, Ok("Oslo/BLUE".to_owned()));
    }
}
