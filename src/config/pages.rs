//! `[pages]`: the look and language of the pages people see (the forum's name, logo and accent
//! colour, replacement templates, extra message files, the default language). Values are checked
//! here so that none can break the pages' Content-Security-Policy or inject markup; the
//! templates and message files themselves are compiled and rendered by [`crate::pages::Pages`]
//! at start-up and by `check`.

use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use crate::pages::Rgb;

/// Longest accepted `forum_name`, in characters.
pub const MAX_FORUM_NAME_CHARS: usize = 80;

/// `[pages]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPages {
    pub(crate) forum_name: Option<String>,
    pub(crate) logo_url: Option<String>,
    pub(crate) accent_color: Option<String>,
    pub(crate) templates_dir: Option<PathBuf>,
    pub(crate) locales_dir: Option<PathBuf>,
    pub(crate) default_language: String,
}

impl Default for RawPages {
    fn default() -> Self {
        Self {
            forum_name: None,
            logo_url: None,
            accent_color: None,
            templates_dir: None,
            locales_dir: None,
            default_language: crate::i18n::FALLBACK.to_owned(),
        }
    }
}

/// `[pages]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagesConfig {
    /// The forum's name, shown in every page's title and header (plain text, at most
    /// [`MAX_FORUM_NAME_CHARS`] characters, no control characters).
    pub forum_name: Option<String>,
    /// The forum's logo, shown in the header: an `https` URL (the pages' CSP allows images
    /// from `https:` only).
    pub logo_url: Option<Url>,
    /// Colour of buttons and the header rule; text on it is black or white, whichever reads
    /// better.
    pub accent_color: Option<Rgb>,
    /// A directory whose `base.html`, `error.html` or `logged_out.html` replace the bundled
    /// templates.
    pub templates_dir: Option<PathBuf>,
    /// A directory of `<language>.ftl` message files adding languages or replacing bundled
    /// messages.
    pub locales_dir: Option<PathBuf>,
    /// The language used when `Accept-Language` names no available one (default `en`).
    pub default_language: String,
}

impl Default for PagesConfig {
    fn default() -> Self {
        Self {
            forum_name: None,
            logo_url: None,
            accent_color: None,
            templates_dir: None,
            locales_dir: None,
            default_language: crate::i18n::FALLBACK.to_owned(),
        }
    }
}

/// Validates `[pages]`; every problem is returned as (key, message).
pub(crate) fn validate(raw: RawPages) -> Result<PagesConfig, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let given = |text: Option<String>| text.filter(|t| !t.trim().is_empty());
    let forum_name = given(raw.forum_name).map(|name| name.trim().to_owned());
    if let Some(name) = &forum_name {
        if name.chars().count() > MAX_FORUM_NAME_CHARS {
            problems.push((
                "pages.forum_name".to_owned(),
                format!("is longer than {MAX_FORUM_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            problems.push((
                "pages.forum_name".to_owned(),
                "contains control characters".to_owned(),
            ));
        }
    }
    let logo_url = match given(raw.logo_url) {
        Some(text) => match Url::parse(text.trim()) {
            Ok(url)
                if url.scheme() == "https"
                    && url.host().is_some()
                    && url.username().is_empty()
                    && url.password().is_none() =>
            {
                Some(url)
            }
            _ => {
                problems.push((
                    "pages.logo_url".to_owned(),
                    format!(
                        "\"{text}\" is not an https URL without user info (the pages' \
                         Content-Security-Policy loads images over https only)"
                    ),
                ));
                None
            }
        },
        None => None,
    };
    let accent_color = match given(raw.accent_color) {
        Some(text) => match Rgb::parse(text.trim()) {
            Some(colour) => Some(colour),
            None => {
                problems.push((
                    "pages.accent_color".to_owned(),
                    format!("\"{text}\" is not a colour written as #rgb or #rrggbb"),
                ));
                None
            }
        },
        None => None,
    };
    let dir = |key: &str, path: Option<PathBuf>, problems: &mut Vec<(String, String)>| {
        let path = path.filter(|p| !p.as_os_str().is_empty())?;
        if path.is_dir() {
            Some(path)
        } else {
            problems.push((
                key.to_owned(),
                format!("{} is not a readable directory", path.display()),
            ));
            None
        }
    };
    let templates_dir = dir("pages.templates_dir", raw.templates_dir, &mut problems);
    let locales_dir = dir("pages.locales_dir", raw.locales_dir, &mut problems);
    let default_language = given(Some(raw.default_language))
        .map_or_else(|| crate::i18n::FALLBACK.to_owned(), |t| t.trim().to_owned());
    if problems.is_empty() {
        Ok(PagesConfig {
            forum_name,
            logo_url,
            accent_color,
            templates_dir,
            locales_dir,
            default_language,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawPages {
        RawPages::default()
    }

    #[test]
    fn defaults_are_the_bundled_look_in_english() {
        assert_eq!(validate(raw()).unwrap(), PagesConfig::default());
    }

    #[test]
    fn values_that_could_break_the_page_are_refused() {
        let problems = validate(RawPages {
            forum_name: Some("x\u{7}".into()),
            logo_url: Some("javascript:alert(1)".into()),
            accent_color: Some("red;background:url(x)".into()),
            templates_dir: Some("/nonexistent/templates".into()),
            ..raw()
        })
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "pages.forum_name",
                "pages.logo_url",
                "pages.accent_color",
                "pages.templates_dir"
            ]
        );
        for url in [
            "http://cdn.example.com/logo.png",
            "data:image/png;base64,AAAA",
            "https://user:pw@cdn.example.com/x.png",
        ] {
            assert!(
                validate(RawPages {
                    logo_url: Some(url.into()),
                    ..raw()
                })
                .is_err(),
                "{url}"
            );
        }
        let ok = validate(RawPages {
            forum_name: Some("  Example Forum ".into()),
            logo_url: Some("https://cdn.example.com/logo.svg".into()),
            accent_color: Some("#C0FFEE".into()),
            ..raw()
        })
        .unwrap();
        assert_eq!(ok.forum_name.as_deref(), Some("Example Forum"));
        assert_eq!(ok.accent_color, Some(Rgb(0xc0, 0xff, 0xee)));
    }
}
