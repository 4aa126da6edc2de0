//! The pages' languages: Fluent message bundles (Project Fluent's FTL syntax) for the bundled
//! languages in `locales/` and for operator-supplied `<language>.ftl` files, and the choice of
//! one language per request from `Accept-Language` (RFC 9110 §12.5.4, quality values honoured).
//!
//! A message missing in the chosen language falls back to English, so an operator's partial
//! translation never leaves a page with a raw message id.

use std::collections::BTreeMap;
use std::path::Path;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use unic_langid::LanguageIdentifier;

/// The language every bundle falls back to; its file must hold every message.
pub const FALLBACK: &str = "en";

/// The bundled translations, embedded at build time.
const BUNDLED: &[(&str, &str)] = &[
    ("en", include_str!("../locales/en.ftl")),
    ("de", include_str!("../locales/de.ftl")),
    ("es", include_str!("../locales/es.ftl")),
    ("fr", include_str!("../locales/fr.ftl")),
];

/// At most this many language ranges of one `Accept-Language` header are considered.
const MAX_RANGES: usize = 16;

/// The message bundles of every available language.
pub struct Localizer {
    bundles: BTreeMap<String, FluentBundle<FluentResource>>,
    default: String,
}

impl std::fmt::Debug for Localizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Localizer")
            .field("languages", &self.bundles.keys().collect::<Vec<_>>())
            .field("default", &self.default)
            .finish()
    }
}

/// A problem with a message file, for `check` and start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct LocaleProblem {
    /// The file (or bundled language) the problem is in.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

impl Localizer {
    /// The bundled languages only, English by default.
    pub fn bundled() -> Result<Self, Vec<LocaleProblem>> {
        Self::load(None, FALLBACK)
    }

    /// The bundled languages plus every `<language>.ftl` in `dir` (whose messages replace
    /// bundled ones of the same id), with `default` chosen when nothing in `Accept-Language`
    /// matches. Every problem is reported, not only the first.
    pub fn load(dir: Option<&Path>, default: &str) -> Result<Self, Vec<LocaleProblem>> {
        let mut problems = Vec::new();
        let mut sources: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (tag, text) in BUNDLED {
            sources
                .entry((*tag).to_owned())
                .or_default()
                .push((format!("bundled {tag}.ftl"), (*text).to_owned()));
        }
        if let Some(dir) = dir {
            match read_dir_ftl(dir) {
                Ok(files) => {
                    for (tag, file, text) in files {
                        match tag.parse::<LanguageIdentifier>() {
                            Ok(id) => sources
                                .entry(id.to_string())
                                .or_default()
                                .push((file, text)),
                            Err(_) => problems.push(LocaleProblem {
                                file,
                                message: format!(
                                    "\"{tag}\" is not a language tag (name files like de.ftl \
                                     or pt-BR.ftl)"
                                ),
                            }),
                        }
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        let mut bundles = BTreeMap::new();
        for (tag, files) in sources {
            let Ok(id) = tag.parse::<LanguageIdentifier>() else {
                continue;
            };
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            // Pages are HTML: the bidi isolation marks Fluent puts around arguments would show
            // up in copied text and tests, and the page's `lang`/`dir` already set direction.
            bundle.set_use_isolating(false);
            for (file, text) in files {
                let resource = match FluentResource::try_new(text) {
                    Ok(resource) => resource,
                    Err((_, errors)) => {
                        for error in errors {
                            problems.push(LocaleProblem {
                                file: file.clone(),
                                message: format!("syntax error: {error:?}"),
                            });
                        }
                        continue;
                    }
                };
                bundle.add_resource_overriding(resource);
            }
            bundles.insert(tag, bundle);
        }
        let default = match default.parse::<LanguageIdentifier>() {
            Ok(id) if bundles.contains_key(&id.to_string()) => id.to_string(),
            _ => {
                problems.push(LocaleProblem {
                    file: "pages.default_language".to_owned(),
                    message: format!(
                        "\"{default}\" is not an available language (available: {})",
                        bundles.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
                FALLBACK.to_owned()
            }
        };
        if problems.is_empty() {
            Ok(Self { bundles, default })
        } else {
            Err(problems)
        }
    }

    /// The available languages, as tags.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.bundles.keys().map(String::as_str)
    }

    /// The language pages use when `Accept-Language` names none of the available ones.
    pub fn default_language(&self) -> &str {
        &self.default
    }

    /// Chooses the best available language for an `Accept-Language` header value: ranges by
    /// descending quality (`q=0` excluded), each matched exactly first and then by its primary
    /// language (`de-AT` finds `de`), then the default.
    pub fn negotiate(&self, accept_language: Option<&str>) -> &str {
        let Some(header) = accept_language else {
            return &self.default;
        };
        let mut ranges: Vec<(&str, u16)> = header
            .split(',')
            .take(MAX_RANGES)
            .filter_map(|item| {
                let mut parts = item.split(';');
                let tag = parts.next()?.trim();
                let mut quality = 1000;
                for param in parts {
                    if let Some(q) = param.trim().strip_prefix("q=") {
                        quality = parse_quality(q)?;
                    }
                }
                (!tag.is_empty() && quality > 0).then_some((tag, quality))
            })
            .collect();
        // A stable sort keeps the header's order among equal qualities.
        ranges.sort_by_key(|range| std::cmp::Reverse(range.1));
        for (tag, _) in ranges {
            if tag == "*" {
                return &self.default;
            }
            let Ok(wanted) = tag.parse::<LanguageIdentifier>() else {
                continue;
            };
            if let Some((key, _)) = self.bundles.get_key_value(&wanted.to_string()) {
                return key;
            }
            let language = wanted.language.as_str();
            if let Some((key, _)) = self.bundles.get_key_value(language) {
                return key;
            }
            if let Some(key) = self
                .bundles
                .keys()
                .find(|key| key.split('-').next() == Some(language))
            {
                return key;
            }
        }
        &self.default
    }

    /// The message `id` in `language` with `args`, falling back to English, then to the id
    /// itself (which `check` reports before any person sees it).
    pub fn message(&self, language: &str, id: &str, args: &[(&str, FluentValue<'_>)]) -> String {
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            fluent_args.set(*name, value.clone());
        }
        for tag in [language, FALLBACK] {
            let Some(bundle) = self.bundles.get(tag) else {
                continue;
            };
            let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) else {
                continue;
            };
            let mut errors = Vec::new();
            let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
            if !errors.is_empty() {
                tracing::warn!(
                    language = tag,
                    id,
                    ?errors,
                    "page message formatted with errors"
                );
            }
            return text.into_owned();
        }
        id.to_owned()
    }

    /// Whether `language` (or the English fallback) has the message `id`.
    pub fn has_message(&self, language: &str, id: &str) -> bool {
        [language, FALLBACK].iter().any(|tag| {
            self.bundles
                .get(*tag)
                .is_some_and(|bundle| bundle.has_message(id))
        })
    }

    /// Messages of the English file missing from `language` (they show in English).
    pub fn missing_messages(&self, language: &str) -> Vec<String> {
        let (Some(english), Some(bundle)) =
            (self.bundles.get(FALLBACK), self.bundles.get(language))
        else {
            return Vec::new();
        };
        BUNDLED
            .iter()
            .filter(|(tag, _)| *tag == FALLBACK)
            .flat_map(|(_, text)| message_ids(text))
            .filter(|id| english.has_message(id) && !bundle.has_message(id))
            .collect()
    }
}

/// A `q` value (RFC 9110 §12.4.2) in thousandths; `None` when malformed.
fn parse_quality(text: &str) -> Option<u16> {
    let text = text.trim();
    let value: f32 = text.parse().ok()?;
    if !(0.0..=1.0).contains(&value) || text.len() > 5 {
        return None;
    }
    Some((value * 1000.0).round() as u16)
}

/// The ids of the messages defined in an FTL text (lines starting with an identifier and `=`).
fn message_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_alphabetic()))
        .filter_map(|line| line.split_once('=').map(|(id, _)| id.trim().to_owned()))
        .collect()
}

/// The `.ftl` files of `dir` as (language tag, file name, text).
fn read_dir_ftl(dir: &Path) -> Result<Vec<(String, String, String)>, LocaleProblem> {
    let problem = |message: String| LocaleProblem {
        file: dir.display().to_string(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| problem(format!("cannot read: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| problem(format!("cannot read: {e}")))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("ftl") {
            continue;
        }
        let Some(tag) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| LocaleProblem {
            file: name.clone(),
            message: format!("cannot read: {e}"),
        })?;
        files.push((tag.to_owned(), name, text));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_available_language() {
        let l = Localizer::bundled().unwrap();
        assert_eq!(l.negotiate(None), "en");
        assert_eq!(l.negotiate(Some("de-DE,de;q=0.9,en;q=0.8")), "de");
        assert_eq!(l.negotiate(Some("en;q=0.5, fr")), "fr");
        assert_eq!(l.negotiate(Some("es-419")), "es");
        assert_eq!(l.negotiate(Some("ja, it;q=0.9")), "en");
        assert_eq!(l.negotiate(Some("de;q=0, fr;q=0.1")), "fr");
        assert_eq!(l.negotiate(Some("*")), "en");
        assert_eq!(
            l.negotiate(Some("de;q=2, fr")),
            "fr",
            "a bad q drops the range"
        );
        assert_eq!(l.negotiate(Some(";;,,,q=,")), "en");
        assert_eq!(l.negotiate(Some(&"x-y, ".repeat(10_000))), "en");
    }

    #[test]
    fn every_bundled_language_has_every_english_message() {
        let l = Localizer::bundled().unwrap();
        for language in ["de", "es", "fr"] {
            assert_eq!(
                l.missing_messages(language),
                Vec::<String>::new(),
                "{language}"
            );
        }
        assert_eq!(
            l.message("de", "back-to-named-forum", &[("forum", "Beispiel".into())]),
            "Zurück zu Beispiel"
        );
        assert_eq!(
            l.message("xx", "back-to-named-forum", &[("forum", "X".into())]),
            "Back to X"
        );
        assert_eq!(
            l.message("fr", "retry-after", &[("seconds", 1.into())]),
            "Vous pourrez réessayer dans une seconde."
        );
        assert_eq!(
            l.message("es", "retry-after", &[("seconds", 5.into())]),
            "Puede intentarlo de nuevo en 5 segundos."
        );
        assert_eq!(l.message("de", "no-such-message", &[]), "no-such-message");
    }

    #[test]
    fn operator_files_add_languages_and_replace_messages() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("it.ftl"),
            "back-to-named-forum = Torna a { $forum }\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("de.ftl"), "try-again = Nochmal\n").unwrap();
        let l = Localizer::load(Some(dir.path()), "it").unwrap();
        assert_eq!(l.default_language(), "it");
        assert_eq!(l.negotiate(Some("it-CH")), "it");
        assert_eq!(
            l.message("it", "back-to-named-forum", &[("forum", "F".into())]),
            "Torna a F"
        );
        // Untranslated messages fall back to English.
        assert_eq!(l.message("it", "try-again", &[]), "Try again");
        assert_eq!(l.message("de", "try-again", &[]), "Nochmal");

        std::fs::write(dir.path().join("broken.ftl"), "this is not = { fluent\n").unwrap();
        let problems = Localizer::load(Some(dir.path()), "en").unwrap_err();
        assert!(
            problems.iter().any(|p| p.file.ends_with("broken.ftl")),
            "{problems:?}"
        );
        let problems = Localizer::load(None, "pt").unwrap_err();
        assert!(problems[0].message.contains("not an available language"));
    }
}
