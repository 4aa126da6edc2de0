//! `[pages]`: the look and language of the pages people see (the forum's name, logo and accent
//! colour, replacement templates, extra message files, the default language). Values are checked
//! here so that none can break the pages' Content-Security-Policy or inject markup; the
//! templates and message files themselves are compiled and rendered by [`crate::http::pages::Pages`]
//! at start-up and by `check`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

/// Longest accepted `forum_name`, in characters.
pub const MAX_FORUM_NAME_CHARS: usize = 80;

/// `[pages]` as written.
#[derive(Debug, Deserialize, Serialize)]
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

/// A colour, parsed from `#rgb` or `#rrggbb` only, so that it can go into a `<style>` element
/// without any way to end the declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// Parses `#rgb` or `#rrggbb` (hex digits, either case).
    pub fn parse(text: &str) -> Option<Rgb> {
        let hex = text.strip_prefix('#')?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let channel = |s: &str| u8::from_str_radix(s, 16).ok();
        match hex.len() {
            3 => {
                let mut it = hex.chars().map(|c| channel(&format!("{c}{c}")));
                Some(Rgb(it.next()??, it.next()??, it.next()??))
            }
            6 => Some(Rgb(
                channel(hex.get(0..2)?)?,
                channel(hex.get(2..4)?)?,
                channel(hex.get(4..6)?)?,
            )),
            _ => None,
        }
    }

    /// As CSS: `#rrggbb`.
    pub fn css(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// WCAG 2.x relative luminance.
    fn luminance(self) -> f64 {
        let linear = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.040_45 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * linear(self.0) + 0.7152 * linear(self.1) + 0.0722 * linear(self.2)
    }

    /// White or near-black, whichever reads better on this colour (WCAG contrast ratio).
    pub fn text_colour(self) -> &'static str {
        let l = self.luminance();
        let on_white = 1.05 / (l + 0.05);
        let on_dark = (l + 0.05) / (0.0100 + 0.05);
        if on_white >= on_dark {
            "#ffffff"
        } else {
            "#111111"
        }
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
