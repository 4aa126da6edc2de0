//! Username and group-name rules of Discourse (`UsernameValidator` and
//! `UserNameSuggester.sanitize_username`): cleaning a suggested username into one Discourse
//! accepts, and checking that a group name is one Discourse could have. Discourse validates
//! group names with its username rules, so both share [`NameRules`].

/// The site settings that decide which names Discourse accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRules {
    /// `min_username_length` (Discourse default 3).
    pub min_length: usize,
    /// `max_username_length` (Discourse default 20, at most 60).
    pub max_length: usize,
    /// `unicode_usernames`: letters of any script instead of ASCII only.
    pub unicode: bool,
}

/// Discourse's hard cap on `max_username_length`.
pub const HARD_MAX_LENGTH: usize = 60;

/// Suffixes Discourse refuses at the end of a name because they look like file names.
const CONFUSING_EXTENSIONS: [&str; 15] = [
    "js", "json", "css", "htm", "html", "xml", "jpg", "jpeg", "png", "gif", "bmp", "ico", "tif",
    "tiff", "woff",
];

fn is_special(c: char) -> bool {
    matches!(c, '-' | '_' | '.')
}

impl NameRules {
    fn is_word_char(&self, c: char) -> bool {
        if self.unicode {
            c.is_alphanumeric()
        } else {
            c.is_ascii_alphanumeric()
        }
    }

    fn is_allowed(&self, c: char) -> bool {
        self.is_word_char(c) || is_special(c)
    }

    /// Cleans a suggested username the way Discourse's suggester does, so the name Discourse
    /// stores is the one `explain` shows. Email-like values keep only the part before `@`
    /// (Entra's `preferred_username` is a UPN). Returns `None` when nothing usable is left, so
    /// the caller can try the next source.
    pub fn clean_username(&self, raw: &str) -> Option<String> {
        let local = raw.split('@').next().unwrap_or(raw).trim();
        let mut text = String::with_capacity(local.len());
        for c in local.chars() {
            if self.unicode || c.is_ascii() {
                text.push(c);
            } else {
                match transliterate(c) {
                    Some(ascii) => text.push_str(ascii),
                    None => text.push('_'),
                }
            }
        }
        let mut text: String = text
            .chars()
            .map(|c| if self.is_allowed(c) { c } else { '_' })
            .collect();
        text = text
            .trim_start_matches(|c: char| !(self.is_word_char(c) || c == '_'))
            .to_owned();
        text = replace_confusing_extension(&text);
        text = self.trim_trailing(&text);
        text = collapse_specials(&text);
        let mut truncated: String = text.chars().take(self.max_length).collect();
        truncated = self.trim_trailing(&truncated);
        if truncated.is_empty() {
            return None;
        }
        while truncated.chars().count() < self.min_length {
            truncated.push('1');
        }
        Some(truncated)
    }

    fn trim_trailing(&self, text: &str) -> String {
        text.trim_end_matches(|c: char| !self.is_word_char(c))
            .to_owned()
    }

    /// Checks a group name against Discourse's rules; the error says what is wrong.
    pub fn check_group_name(&self, name: &str) -> Result<(), String> {
        let length = name.chars().count();
        if length < self.min_length {
            return Err(format!(
                "shorter than {} characters (Discourse's min_username_length)",
                self.min_length
            ));
        }
        if length > self.max_length {
            return Err(format!(
                "longer than {} characters (Discourse's max_username_length)",
                self.max_length
            ));
        }
        if let Some(bad) = name.chars().find(|c| !self.is_allowed(*c)) {
            return Err(if self.unicode {
                format!("contains `{bad}`; only letters, digits, `_`, `-` and `.` are allowed")
            } else {
                format!(
                    "contains `{bad}`; only ASCII letters, digits, `_`, `-` and `.` are allowed"
                )
            });
        }
        if name
            .chars()
            .next()
            .is_some_and(|c| !(self.is_word_char(c) || c == '_'))
        {
            return Err("must begin with a letter, digit or `_`".to_owned());
        }
        if name.chars().last().is_some_and(|c| !self.is_word_char(c)) {
            return Err("must end with a letter or digit".to_owned());
        }
        if name
            .chars()
            .zip(name.chars().skip(1))
            .any(|(a, b)| is_special(a) && is_special(b))
        {
            return Err("contains two of `_`, `-`, `.` in a row".to_owned());
        }
        if confusing_extension_start(name).is_some() {
            return Err("ends in a file extension such as `.json`".to_owned());
        }
        if is_automatic_group(name) {
            return Err(
                "is one of Discourse's automatic groups, which DiscourseConnect cannot set \
                 (use `admin`/`moderator` on a group rule instead)"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// Discourse's automatic groups, filled by Discourse itself; DiscourseConnect skips them.
pub fn is_automatic_group(name: &str) -> bool {
    const AUTOMATIC: [&str; 9] = [
        "everyone",
        "admins",
        "moderators",
        "staff",
        "trust_level_0",
        "trust_level_1",
        "trust_level_2",
        "trust_level_3",
        "trust_level_4",
    ];
    AUTOMATIC.iter().any(|g| g.eq_ignore_ascii_case(name))
}

/// Byte offset of a trailing `.<confusing extension>`, if any.
fn confusing_extension_start(text: &str) -> Option<usize> {
    let dot = text.rfind('.')?;
    let extension = &text[dot + 1..];
    CONFUSING_EXTENSIONS
        .iter()
        .any(|e| e.eq_ignore_ascii_case(extension))
        .then_some(dot)
}

/// Discourse replaces a trailing `.json` (and similar) with `_`.
fn replace_confusing_extension(text: &str) -> String {
    match confusing_extension_start(text) {
        Some(dot) => format!("{}_", &text[..dot]),
        None => text.to_owned(),
    }
}

/// Runs of two or more of `-_.` become a single `_`.
fn collapse_specials(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_special(c) {
            let mut j = i;
            while j < chars.len() && is_special(chars[j]) {
                j += 1;
            }
            out.push(if j - i >= 2 { '_' } else { c });
            i = j;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Latin-1 Supplement, U+00C0..=U+00FF; `None` for `×` and `÷`.
const LATIN_1: [Option<&str>; 64] = [
    Some("A"),
    Some("A"),
    Some("A"),
    Some("A"),
    Some("A"),
    Some("A"),
    Some("AE"),
    Some("C"),
    Some("E"),
    Some("E"),
    Some("E"),
    Some("E"),
    Some("I"),
    Some("I"),
    Some("I"),
    Some("I"),
    Some("D"),
    Some("N"),
    Some("O"),
    Some("O"),
    Some("O"),
    Some("O"),
    Some("O"),
    None,
    Some("O"),
    Some("U"),
    Some("U"),
    Some("U"),
    Some("U"),
    Some("Y"),
    Some("Th"),
    Some("ss"),
    Some("a"),
    Some("a"),
    Some("a"),
    Some("a"),
    Some("a"),
    Some("a"),
    Some("ae"),
    Some("c"),
    Some("e"),
    Some("e"),
    Some("e"),
    Some("e"),
    Some("i"),
    Some("i"),
    Some("i"),
    Some("i"),
    Some("d"),
    Some("n"),
    Some("o"),
    Some("o"),
    Some("o"),
    Some("o"),
    Some("o"),
    None,
    Some("o"),
    Some("u"),
    Some("u"),
    Some("u"),
    Some("u"),
    Some("y"),
    Some("th"),
    Some("y"),
];

/// Latin Extended-A, U+0100..=U+017F.
const LATIN_EXTENDED_A: [&str; 128] = [
    "A", "a", "A", "a", "A", "a", "C", "c", "C", "c", "C", "c", "C", "c", "D", "d", // 0100
    "D", "d", "E", "e", "E", "e", "E", "e", "E", "e", "E", "e", "G", "g", "G", "g", // 0110
    "G", "g", "G", "g", "H", "h", "H", "h", "I", "i", "I", "i", "I", "i", "I", "i", // 0120
    "I", "i", "IJ", "ij", "J", "j", "K", "k", "k", "L", "l", "L", "l", "L", "l", "L", // 0130
    "l", "L", "l", "N", "n", "N", "n", "N", "n", "n", "N", "n", "O", "o", "O", "o", // 0140
    "O", "o", "OE", "oe", "R", "r", "R", "r", "R", "r", "S", "s", "S", "s", "S", "s", // 0150
    "S", "s", "T", "t", "T", "t", "T", "t", "U", "u", "U", "u", "U", "u", "U", "u", // 0160
    "U", "u", "U", "u", "W", "w", "Y", "y", "Y", "Z", "z", "Z", "z", "Z", "z", "s", // 0170
];

/// ASCII for the accented Latin letters Discourse's transliteration also handles; other
/// scripts have no ASCII form here and become `_` (then the next username source is tried).
fn transliterate(c: char) -> Option<&'static str> {
    let code = c as u32;
    match code {
        0xC0..=0xFF => LATIN_1[(code - 0xC0) as usize],
        0x100..=0x17F => Some(LATIN_EXTENDED_A[(code - 0x100) as usize]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASCII: NameRules = NameRules {
        min_length: 3,
        max_length: 20,
        unicode: false,
    };

    #[test]
    fn cleans_usernames_like_discourse() {
        let cases: &[(&str, Option<&str>)] = &[
            ("alice", Some("alice")),
            ("Alice Smith", Some("Alice_Smith")),
            ("alice.smith@contoso.com", Some("alice.smith")),
            ("José Müller", Some("Jose_Muller")),
            ("Łukasz Żółć", Some("Lukasz_Zolc")),
            ("straße", Some("strasse")),
            ("..alice..", Some("alice")),
            ("-_bob_-", Some("_bob")),
            ("a--b__c..d", Some("a_b_c_d")),
            ("report.json", Some("report")),
            ("bo", Some("bo1")),
            ("x", Some("x11")),
            (
                "averyveryverylongusername_indeed",
                Some("averyveryverylonguse"),
            ),
            ("abcdefghijklmnopqrs.tuv", Some("abcdefghijklmnopqrs")),
            ("Иван", None),
            ("@example.com", None),
            ("!!!", None),
            ("  ", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                ASCII.clean_username(raw).as_deref(),
                *expected,
                "cleaning {raw:?}"
            );
        }
    }

    #[test]
    fn unicode_usernames_keep_letters_of_any_script() {
        let rules = NameRules {
            unicode: true,
            ..ASCII
        };
        assert_eq!(
            rules.clean_username("Иван Петров").as_deref(),
            Some("Иван_Петров")
        );
        assert_eq!(rules.clean_username("José").as_deref(), Some("José"));
    }

    #[test]
    fn respects_configured_lengths() {
        let rules = NameRules {
            min_length: 5,
            max_length: 8,
            unicode: false,
        };
        assert_eq!(rules.clean_username("ab").as_deref(), Some("ab111"));
        assert_eq!(
            rules.clean_username("abcdefghijk").as_deref(),
            Some("abcdefgh")
        );
    }

    #[test]
    fn every_cleaned_username_is_a_valid_name() {
        for raw in [
            "Alice Smith",
            "José Müller",
            "a--b__c..d",
            "report.json",
            "x",
            "___x___",
            "a.b-c_d",
            "1234567890123456789.-x",
        ] {
            if let Some(clean) = ASCII.clean_username(raw) {
                // A cleaned username obeys every rule a group name must obey.
                assert_eq!(
                    ASCII.check_group_name(&clean),
                    Ok(()),
                    "{raw:?} -> {clean:?}"
                );
            }
        }
    }

    #[test]
    fn checks_group_names() {
        let cases: &[(&str, bool)] = &[
            ("staff_team", true),
            ("team-blue", true),
            ("_internal", true),
            ("a.b", true),
            ("ab", false),
            ("twenty_one_characters", false),
            ("/staff/admins", false),
            ("team blue", false),
            ("-team", false),
            ("team_", false),
            ("team__blue", false),
            ("data.json", false),
            ("admins", false),
            ("Trust_Level_2", false),
            ("équipe", false),
        ];
        for (name, valid) in cases {
            assert_eq!(ASCII.check_group_name(name).is_ok(), *valid, "{name}");
        }
    }

    #[test]
    fn transliteration_tables_cover_their_ranges() {
        assert_eq!(transliterate('Ā'), Some("A"));
        assert_eq!(transliterate('č'), Some("c"));
        assert_eq!(transliterate('Ł'), Some("L"));
        assert_eq!(transliterate('ł'), Some("l"));
        assert_eq!(transliterate('ŉ'), Some("n"));
        assert_eq!(transliterate('Ÿ'), Some("Y"));
        assert_eq!(transliterate('ž'), Some("z"));
        assert_eq!(transliterate('ſ'), Some("s"));
        assert_eq!(transliterate('ÿ'), Some("y"));
        assert_eq!(transliterate('×'), None);
        assert_eq!(transliterate('Ж'), None);
    }
}
