//! DiscourseConnect codec: verifies Discourse's signed login requests and builds the signed
//! answers Discourse accepts at `/session/sso_login` (DiscourseConnect, as implemented by
//! Discourse's `DiscourseConnectBase`). Pure: no I/O, no clock.
//!
//! On the wire a message is `sso=<Base64 of a form-encoded query>&sig=<hex HMAC-SHA256 of that
//! Base64 text>`. Outgoing messages are built exactly the way Discourse builds its own (strict
//! form encoding, standard Base64, lowercase hex); incoming ones are accepted the way Discourse
//! accepts them (line breaks and missing padding allowed, URL-safe Base64 refused).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The longest `sso` text accepted. Discourse's own request is about 150 bytes and a generous
/// answer a few hundred; the limit only stops oversized input before it is hashed and decoded.
pub const MAX_SSO_LEN: usize = 8 * 1024;

/// Length of a hex-encoded HMAC-SHA256.
const SIG_HEX_LEN: usize = 64;

/// Standard alphabet. Encoding pads, like Ruby's `Base64.strict_encode64`; decoding accepts
/// missing padding and non-zero trailing bits, like Ruby's lenient `Base64.decode64`.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why an incoming DiscourseConnect message was refused.
///
/// Messages name what is wrong, never the payload, the signature or the secret, so they can be
/// logged and shown on an error page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("the DiscourseConnect request has no `sso` parameter")]
    MissingSso,
    #[error("the DiscourseConnect request has no `sig` parameter")]
    MissingSig,
    #[error("the DiscourseConnect request has more than one `sso` parameter")]
    RepeatedSso,
    #[error("the DiscourseConnect request has more than one `sig` parameter")]
    RepeatedSig,
    #[error("the DiscourseConnect `sso` payload is empty")]
    EmptyPayload,
    #[error(
        "the DiscourseConnect `sso` payload is {len} bytes long; at most {MAX_SSO_LEN} are accepted"
    )]
    PayloadTooLong { len: usize },
    #[error(
        "the DiscourseConnect `sso` payload holds characters outside the standard Base64 alphabet \
         (URL-safe Base64, or a `+` that was not percent-encoded and became a space)"
    )]
    OutsideBase64Alphabet,
    #[error("the DiscourseConnect `sso` payload is not valid Base64")]
    InvalidBase64,
    #[error("the DiscourseConnect payload is not UTF-8 text")]
    NotUtf8,
    #[error("the DiscourseConnect `sig` is not 64 lowercase hexadecimal characters")]
    MalformedSig,
    #[error(
        "the DiscourseConnect `sig` does not match the payload \
         (do both sides use the same DiscourseConnect secret?)"
    )]
    SignatureMismatch,
    #[error("the DiscourseConnect payload gives the key `{key}` more than once")]
    RepeatedKey {
        /// The key if Discourse defines it, else `custom.*` or `(unrecognised)`: names chosen by
        /// the sender are not repeated back.
        key: &'static str,
    },
    #[error("the DiscourseConnect payload has no `nonce`")]
    MissingNonce,
    #[error("the DiscourseConnect payload has no `return_sso_url`")]
    MissingReturnSsoUrl,
    /// The text is not an absolute URL exactly as the URL Standard serializes it (raw control
    /// characters, spaces, an uppercase scheme or host, a default port, ...). The bridge would
    /// otherwise compare one URL and redirect to another text.
    #[error("the DiscourseConnect `return_sso_url` is not a URL in its canonical form")]
    NonCanonicalReturnSsoUrl,
}

impl ConnectError {
    /// True when the message was well formed but signed with another secret (or tampered
    /// with): the HTTP layer answers 403 for this and 400 for every other variant.
    pub fn is_bad_signature(&self) -> bool {
        matches!(self, ConnectError::SignatureMismatch)
    }
}

/// The DiscourseConnect shared secret (`discourse_connect_secret`), ready to sign and verify.
///
/// Holds the HMAC key state rather than the text, and never prints it.
#[derive(Clone)]
pub struct ConnectSecret {
    keyed_mac: Hmac<Sha256>,
}

impl fmt::Debug for ConnectSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectSecret([redacted])")
    }
}

impl ConnectSecret {
    /// Keys HMAC-SHA256 with the secret's bytes, as Discourse does with the setting's text.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            keyed_mac: keyed_hmac(secret.as_ref()),
        }
    }

    /// The lowercase hex HMAC-SHA256 of the Base64 text exactly as given (line breaks
    /// included), which is what Discourse puts in `sig`.
    pub fn sign(&self, base64_text: &str) -> String {
        let mut mac = self.keyed_mac.clone();
        mac.update(base64_text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks `sig_hex` against the Base64 text exactly as received, in constant time.
    ///
    /// Only 64 lowercase hex characters are a signature: Discourse compares the hex strings
    /// themselves, so it refuses uppercase hex too.
    pub fn verify(&self, base64_text: &str, sig_hex: &str) -> Result<(), ConnectError> {
        let well_formed = sig_hex.len() == SIG_HEX_LEN
            && sig_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return Err(ConnectError::MalformedSig);
        }
        let expected = hex::decode(sig_hex).map_err(|_| ConnectError::MalformedSig)?;
        let mut mac = self.keyed_mac.clone();
        mac.update(base64_text.as_bytes());
        mac.verify_slice(&expected)
            .map_err(|_| ConnectError::SignatureMismatch)
    }
}

/// Keys HMAC-SHA256 with the secret's bytes. RFC 2104 §2 takes keys of every length, and so
/// does the `hmac` crate: `new_from_slice` hashes a key longer than a block and pads a shorter
/// one. Its `Result` comes from the `KeyInit` trait, whose error only fixed-size keys can hit.
fn keyed_hmac(secret: &[u8]) -> Hmac<Sha256> {
    match <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// Every payload key Discourse reads from a provider's answer, in the order Discourse itself
/// emits them. `custom.<name>` fields are kept apart and always come last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    AddGroups,
    Admin,
    AvatarForceUpdate,
    AvatarUrl,
    Bio,
    CardBackgroundUrl,
    Email,
    ExternalId,
    Groups,
    Locale,
    LocaleForceUpdate,
    Location,
    Moderator,
    Name,
    Nonce,
    ProfileBackgroundUrl,
    RemoveGroups,
    RequireActivation,
    ReturnSsoUrl,
    SuppressWelcomeMessage,
    Title,
    Username,
    Website,
}

impl Field {
    /// All fields, in Discourse's own emission order.
    pub const ALL: [Field; 23] = [
        Field::AddGroups,
        Field::Admin,
        Field::AvatarForceUpdate,
        Field::AvatarUrl,
        Field::Bio,
        Field::CardBackgroundUrl,
        Field::Email,
        Field::ExternalId,
        Field::Groups,
        Field::Locale,
        Field::LocaleForceUpdate,
        Field::Location,
        Field::Moderator,
        Field::Name,
        Field::Nonce,
        Field::ProfileBackgroundUrl,
        Field::RemoveGroups,
        Field::RequireActivation,
        Field::ReturnSsoUrl,
        Field::SuppressWelcomeMessage,
        Field::Title,
        Field::Username,
        Field::Website,
    ];

    /// The key as it appears in the payload.
    pub const fn key(self) -> &'static str {
        match self {
            Field::AddGroups => "add_groups",
            Field::Admin => "admin",
            Field::AvatarForceUpdate => "avatar_force_update",
            Field::AvatarUrl => "avatar_url",
            Field::Bio => "bio",
            Field::CardBackgroundUrl => "card_background_url",
            Field::Email => "email",
            Field::ExternalId => "external_id",
            Field::Groups => "groups",
            Field::Locale => "locale",
            Field::LocaleForceUpdate => "locale_force_update",
            Field::Location => "location",
            Field::Moderator => "moderator",
            Field::Name => "name",
            Field::Nonce => "nonce",
            Field::ProfileBackgroundUrl => "profile_background_url",
            Field::RemoveGroups => "remove_groups",
            Field::RequireActivation => "require_activation",
            Field::ReturnSsoUrl => "return_sso_url",
            Field::SuppressWelcomeMessage => "suppress_welcome_message",
            Field::Title => "title",
            Field::Username => "username",
            Field::Website => "website",
        }
    }

    /// Looks a payload key up; `None` for keys Discourse ignores and for `custom.*`.
    pub fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }

    /// Discourse reads these as booleans: only the exact strings `true` and `false` count.
    pub const fn is_bool(self) -> bool {
        matches!(
            self,
            Field::Admin
                | Field::AvatarForceUpdate
                | Field::LocaleForceUpdate
                | Field::Moderator
                | Field::RequireActivation
                | Field::SuppressWelcomeMessage
        )
    }

    /// Discourse reads these as one comma-separated list of group names.
    pub const fn is_group_list(self) -> bool {
        matches!(self, Field::Groups | Field::AddGroups | Field::RemoveGroups)
    }
}

/// A DiscourseConnect payload: at most one value per key, `custom.*` fields separate.
/// Used for both directions (Discourse's request and the provider's answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    fields: BTreeMap<Field, String>,
    custom: BTreeMap<String, String>,
}

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a text field, replacing any earlier value (a key is never repeated).
    pub fn set(&mut self, field: Field, value: impl Into<String>) -> &mut Self {
        self.fields.insert(field, value.into());
        self
    }

    /// Sets a boolean field as the literal `true` or `false` Discourse expects.
    pub fn set_bool(&mut self, field: Field, value: bool) -> &mut Self {
        self.set(field, if value { "true" } else { "false" })
    }

    /// Sets a group list as one comma-joined value.
    pub fn set_groups<S: AsRef<str>>(&mut self, field: Field, groups: &[S]) -> &mut Self {
        let joined = groups
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
        self.set(field, joined)
    }

    /// Sets `custom.<name>`.
    pub fn set_custom(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.custom.insert(name.into(), value.into());
        self
    }

    /// Removes a field.
    pub fn remove(&mut self, field: Field) -> Option<String> {
        self.fields.remove(&field)
    }

    /// The value of a field, if set.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.fields.get(&field).map(String::as_str)
    }

    /// A boolean field read the way Discourse reads it: `Some` only for `true`/`false`.
    pub fn get_bool(&self, field: Field) -> Option<bool> {
        match self.get(field) {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        }
    }

    /// The `custom.<name>` value, if set.
    pub fn custom(&self, name: &str) -> Option<&str> {
        self.custom.get(name).map(String::as_str)
    }

    /// Every set field, in Discourse's emission order.
    pub fn fields(&self) -> impl Iterator<Item = (Field, &str)> {
        self.fields.iter().map(|(f, v)| (*f, v.as_str()))
    }

    /// Every `custom.*` field, by name.
    pub fn custom_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.custom.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every key/value pair as it goes on the wire (`custom.` prefix included), in order.
    pub fn pairs(&self) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, &str)> {
        self.fields()
            .map(|(f, v)| (std::borrow::Cow::Borrowed(f.key()), v))
            .chain(
                self.custom_fields()
                    .map(|(k, v)| (std::borrow::Cow::Owned(format!("custom.{k}")), v)),
            )
    }
}

impl Payload {
    /// The inner query, form-encoded the way Discourse's `Rack::Utils.build_query` does it
    /// (only `A-Z a-z 0-9 * - . _` literal, space as `+`, everything else `%XX`), keys in
    /// [`Payload::pairs`] order.
    pub fn encode_query(&self) -> String {
        let mut query = String::new();
        for (index, (key, value)) in self.pairs().enumerate() {
            if index > 0 {
                query.push('&');
            }
            form_escape_into(&mut query, &key);
            query.push('=');
            form_escape_into(&mut query, value);
        }
        query
    }

    /// Encodes and signs the payload for the wire.
    pub fn sign(&self, secret: &ConnectSecret) -> SignedPayload {
        SignedPayload::from_query(&self.encode_query(), secret)
    }

    /// Parses an inner query (`application/x-www-form-urlencoded`, UTF-8), the inverse of
    /// [`Payload::encode_query`]. It checks no signature: anything received goes through
    /// [`Payload::decode`].
    ///
    /// Any repeated key is refused, because Rack turns it into an array that Discourse then
    /// fails on. The keys Discourse defines and `custom.<name>` are kept; any other key is
    /// dropped, as Discourse drops it. A key without `=` counts as given without a value, which
    /// Discourse reads as unset.
    pub fn from_query(query: &str) -> Result<Payload, ConnectError> {
        let mut payload = Payload::new();
        // Few keys: ordered comparisons beat hashing each with SipHash.
        let mut seen_keys = BTreeSet::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (raw_key, raw_value) = match pair.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (pair, None),
            };
            let key = form_decode_utf8(raw_key)?;
            let field = Field::from_key(&key);
            let custom_name = key.strip_prefix("custom.").filter(|name| !name.is_empty());
            // A clone of a borrowed key is a pointer copy.
            if !seen_keys.insert(key.clone()) {
                let key = match (field, custom_name) {
                    (Some(field), _) => field.key(),
                    (None, Some(_)) => "custom.*",
                    (None, None) => "(unrecognised)",
                };
                return Err(ConnectError::RepeatedKey { key });
            }
            let Some(raw_value) = raw_value else {
                continue;
            };
            let value = form_decode_utf8(raw_value)?.into_owned();
            match (field, custom_name) {
                (Some(field), _) => {
                    payload.set(field, value);
                }
                (None, Some(name)) => {
                    payload.set_custom(name, value);
                }
                (None, None) => {}
            }
        }
        Ok(payload)
    }

    /// Checks and decodes an `sso`/`sig` pair whose URL encoding was already removed (see
    /// [`parse_sso_query`]).
    ///
    /// The order follows Discourse: size, Base64 alphabet, then the signature over the text
    /// exactly as received (line breaks included), and only then decoding. Decoding is lenient
    /// where Discourse is: CR/LF line breaks and missing padding are accepted.
    pub fn decode(sso: &str, sig: &str, secret: &ConnectSecret) -> Result<Payload, ConnectError> {
        if sso.is_empty() {
            return Err(ConnectError::EmptyPayload);
        }
        if sso.len() > MAX_SSO_LEN {
            return Err(ConnectError::PayloadTooLong { len: sso.len() });
        }
        if !sso.bytes().all(is_base64_text_byte) {
            return Err(ConnectError::OutsideBase64Alphabet);
        }
        secret.verify(sso, sig)?;
        // Discourse wraps its Base64 every 60 characters: copy the lines, not byte by byte.
        let mut unwrapped = Vec::with_capacity(sso.len());
        for line in sso.split(['\r', '\n']) {
            unwrapped.extend_from_slice(line.as_bytes());
        }
        let decoded = BASE64
            .decode(unwrapped)
            .map_err(|_| ConnectError::InvalidBase64)?;
        let query = String::from_utf8(decoded).map_err(|_| ConnectError::NotUtf8)?;
        Payload::from_query(&query)
    }
}

/// An encoded and signed payload, ready to be put into a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedPayload {
    /// Standard Base64 of the inner query (padded, no line breaks), not yet URL-encoded.
    pub sso: String,
    /// Lowercase hex HMAC-SHA256 of `sso`.
    pub sig: String,
}

/// Both parts are credentials for one login, so neither is printed.
impl fmt::Debug for SignedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPayload")
            .field("sso", &format_args!("[{} bytes]", self.sso.len()))
            .field("sig", &format_args!("[redacted]"))
            .finish()
    }
}

impl SignedPayload {
    /// Base64-encodes an inner query that is already form-encoded and signs it. Use
    /// [`Payload::sign`] unless the exact query text matters (as in reproducing test vectors).
    pub fn from_query(inner_query: &str, secret: &ConnectSecret) -> SignedPayload {
        let sso = BASE64.encode(inner_query);
        let sig = secret.sign(&sso);
        SignedPayload { sso, sig }
    }

    /// `sso=<form-escaped Base64>&sig=<hex>`, as Discourse writes it (`+ / =` as `%2B %2F %3D`).
    pub fn query_string(&self) -> String {
        let mut query = String::from("sso=");
        form_escape_into(&mut query, &self.sso);
        query.push_str("&sig=");
        form_escape_into(&mut query, &self.sig);
        query
    }

    /// `base` with [`SignedPayload::query_string`] appended after `?`, or after `&` when `base`
    /// already has a query (Discourse's `return_sso_url` and `discourse_connect_url` may). A
    /// fragment stays at the end.
    pub fn redirect_url(&self, base: &str) -> String {
        let (before_fragment, fragment) = match base.split_once('#') {
            Some((before, fragment)) => (before, Some(fragment)),
            None => (base, None),
        };
        let separator = if !before_fragment.contains('?') {
            "?"
        } else if before_fragment.ends_with(['?', '&']) {
            ""
        } else {
            "&"
        };
        let mut url = format!("{before_fragment}{separator}{}", self.query_string());
        if let Some(fragment) = fragment {
            url.push('#');
            url.push_str(fragment);
        }
        url
    }
}

/// What Discourse sends when a login starts: its one-time nonce and where to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoRequest {
    /// Discourse's nonce, to be copied into the answer unchanged.
    pub nonce: String,
    /// Discourse's `/session/sso_login` URL, kept exactly as received.
    pub return_sso_url: String,
}

impl SsoRequest {
    /// Verifies Discourse's login request from the raw (still percent-encoded) URL query.
    ///
    /// An empty `nonce` or `return_sso_url` counts as missing: neither can start a login. A
    /// `return_sso_url` must be exactly its own canonical serialization (see
    /// [`is_canonical_url`]), so the URL the bridge checks is the text it later redirects to.
    pub fn verify(raw_query: &str, secret: &ConnectSecret) -> Result<SsoRequest, ConnectError> {
        Self::verify_expecting(raw_query, secret, None)
    }

    /// [`SsoRequest::verify`] for a bridge that knows which `return_sso_url` it expects:
    /// `expected` must be a canonical serialization (a [`url::Url`]'s `as_str()`), so a
    /// `return_sso_url` equal to it is canonical without parsing it again. Any other URL is
    /// checked exactly as by `verify`; the answer is always the same as `verify`'s.
    pub fn verify_expecting(
        raw_query: &str,
        secret: &ConnectSecret,
        expected: Option<&url::Url>,
    ) -> Result<SsoRequest, ConnectError> {
        let (sso, sig) = parse_sso_query(raw_query)?;
        let mut payload = Payload::decode(&sso, &sig, secret)?;
        let nonce = payload
            .remove(Field::Nonce)
            .filter(|nonce| !nonce.is_empty())
            .ok_or(ConnectError::MissingNonce)?;
        let return_sso_url = payload
            .remove(Field::ReturnSsoUrl)
            .filter(|url| !url.is_empty())
            .ok_or(ConnectError::MissingReturnSsoUrl)?;
        let known_canonical = expected.is_some_and(|url| url.as_str() == return_sso_url);
        if !known_canonical && !is_canonical_url(&return_sso_url) {
            return Err(ConnectError::NonCanonicalReturnSsoUrl);
        }
        Ok(SsoRequest {
            nonce,
            return_sso_url,
        })
    }

    /// Signs the request exactly as Discourse does (`nonce=…&return_sso_url=…`), for the demo
    /// forum and for tests that play Discourse.
    pub fn sign(&self, secret: &ConnectSecret) -> SignedPayload {
        let mut payload = Payload::new();
        payload
            .set(Field::Nonce, self.nonce.as_str())
            .set(Field::ReturnSsoUrl, self.return_sso_url.as_str());
        payload.sign(secret)
    }
}

/// Whether `text` parses as an absolute URL (URL Standard, as the `url` crate implements it)
/// whose serialization is `text` itself, byte for byte. The parser silently drops tabs and line
/// breaks, trims spaces and control characters, lowercases scheme and host, removes a default
/// port and percent-encodes what needs it; any text it would change is refused. Discourse sends
/// `Discourse.base_url + "/session/sso_login"`, which is canonical.
pub fn is_canonical_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| url.as_str() == text)
}

/// Takes `sso` and `sig` out of a raw URL query string (without or with its leading `?`).
///
/// Each parameter is form-decoded once, as Rack does, so a `+` left raw in the Base64 turns into
/// a space and is refused later by the alphabet check. Other parameters are ignored; a repeated
/// `sso` or `sig` is refused because it is ambiguous which one was signed.
pub fn parse_sso_query(raw_query: &str) -> Result<(String, String), ConnectError> {
    let raw_query = raw_query.strip_prefix('?').unwrap_or(raw_query);
    let mut sso = None;
    let mut sig = None;
    for pair in raw_query.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let (slot, repeated) = match &*form_decode(raw_key) {
            b"sso" => (&mut sso, ConnectError::RepeatedSso),
            b"sig" => (&mut sig, ConnectError::RepeatedSig),
            _ => continue,
        };
        if slot.replace(form_decode(raw_value).into_owned()).is_some() {
            return Err(repeated);
        }
    }
    let sso = sso.ok_or(ConnectError::MissingSso)?;
    let sig = sig.ok_or(ConnectError::MissingSig)?;
    // Any byte that is not ASCII is outside both alphabets anyway.
    let sso = String::from_utf8(sso).map_err(|_| ConnectError::OutsideBase64Alphabet)?;
    let sig = String::from_utf8(sig).map_err(|_| ConnectError::MalformedSig)?;
    Ok((sso, sig))
}

/// Discourse's check on the `sso` text: the standard Base64 alphabet, padding and line breaks.
fn is_base64_text_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=' | b'\r' | b'\n')
}

/// Form-escapes like Ruby's `URI.encode_www_form_component` (used by Rack and `CGI.escape`):
/// only `A-Z a-z 0-9 * - . _` stay literal, a space becomes `+`, every other byte `%XX` in
/// uppercase, which is exactly the WHATWG `application/x-www-form-urlencoded` byte serializer
/// (`url::form_urlencoded::byte_serialize`). Since none of `> ? ~ DEL` survive, the Base64 of
/// such a query never holds `+` or `/`, which keeps it intact even where a receiver forgets to
/// escape it.
fn form_escape_into(out: &mut String, text: &str) {
    out.extend(url::form_urlencoded::byte_serialize(text.as_bytes()));
}

/// [`form_decode`] for text that must be UTF-8 (payload keys and values); borrows `text` when
/// there is nothing to decode.
fn form_decode_utf8(text: &str) -> Result<Cow<'_, str>, ConnectError> {
    match form_decode(text) {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(text)),
        Cow::Owned(bytes) => String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| ConnectError::NotUtf8),
    }
}

/// Form-decodes one key or value: `+` is a space, `%XX` a byte; a `%` not followed by two hex
/// digits stays literal (as browsers and the `url` crate treat it). Returns bytes, because the
/// escapes may spell something that is not UTF-8.
fn form_decode(text: &str) -> Cow<'_, [u8]> {
    if !text.bytes().any(|b| matches!(b, b'+' | b'%')) {
        // Nothing to decode: keys and most values.
        return Cow::Borrowed(text.as_bytes());
    }
    // A copy only when there is a `+` to turn into a space.
    let spaced = if text.contains('+') {
        Cow::Owned(text.replace('+', " "))
    } else {
        Cow::Borrowed(text)
    };
    Cow::Owned(percent_encoding::percent_decode_str(&spaced).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The secret of the seed document's worked examples.
    const SEED_SECRET: &str = "d836444a9e4084d5b224a60c208dce14";
    const SEED_NONCE: &str = "cb68251eefb5211e58c00ff1395f0c0b";
    const SECRET: &str = "s3cr3t-0123456789";
    const FORUM_RETURN_URL: &str = "http://forum.example/session/sso_login";

    fn secret() -> ConnectSecret {
        ConnectSecret::new(SECRET)
    }

    /// Signs an arbitrary `sso` text (already Base64, or deliberately not) with the test secret.
    fn signed_text(sso: &str) -> SignedPayload {
        SignedPayload {
            sso: sso.to_owned(),
            sig: secret().sign(sso),
        }
    }

    /// Decodes with the test secret and checks the refusal is `expected`, is a 403 only for a
    /// signature mismatch, and names nothing of what was sent.
    fn assert_refused(sso: &str, sig: &str, expected: ConnectError) {
        let error = Payload::decode(sso, sig, &secret()).unwrap_err();
        assert_eq!(error, expected);
        assert_message_is_safe(&error, &[sso, sig]);
    }

    fn assert_message_is_safe(error: &ConnectError, sent: &[&str]) {
        let message = error.to_string();
        assert_eq!(
            error.is_bad_signature(),
            *error == ConnectError::SignatureMismatch
        );
        assert!(!message.contains(SECRET), "{message}");
        for text in sent.iter().filter(|text| text.len() >= 4) {
            assert!(!message.contains(text), "{message} repeats {text}");
        }
    }

    fn request_query(sso: &str, sig: &str) -> String {
        SignedPayload {
            sso: sso.to_owned(),
            sig: sig.to_owned(),
        }
        .query_string()
    }

    #[test]
    fn seed_example_request_reproduces_byte_for_byte() {
        let seed_secret = ConnectSecret::new(SEED_SECRET);
        let mut payload = Payload::new();
        payload.set(Field::Nonce, SEED_NONCE);
        assert_eq!(payload.encode_query(), format!("nonce={SEED_NONCE}"));

        let signed = payload.sign(&seed_secret);
        assert_eq!(
            signed.sso,
            "bm9uY2U9Y2I2ODI1MWVlZmI1MjExZTU4YzAwZmYxMzk1ZjBjMGI="
        );
        assert_eq!(
            signed.sig,
            "1ce1494f94484b6f6a092be9b15ccc1cdafb1f8460a3838fbb0e0883c4390471"
        );
        assert_eq!(
            signed.redirect_url("http://www.example.com/discourse/sso"),
            "http://www.example.com/discourse/sso?sso=bm9uY2U9Y2I2ODI1MWVlZmI1MjExZTU4YzAwZmYxMzk1ZjBjMGI%3D&sig=1ce1494f94484b6f6a092be9b15ccc1cdafb1f8460a3838fbb0e0883c4390471"
        );

        let (sso, sig) = parse_sso_query(&signed.query_string()).unwrap();
        assert_eq!(Payload::decode(&sso, &sig, &seed_secret).unwrap(), payload);
    }

    #[test]
    fn seed_example_answer_reproduces_byte_for_byte() {
        let seed_secret = ConnectSecret::new(SEED_SECRET);
        let unsigned = "nonce=cb68251eefb5211e58c00ff1395f0c0b&name=sam&username=samsam&email=test%40test.com&external_id=hello123&require_activation=true";
        let expected_sso = "bm9uY2U9Y2I2ODI1MWVlZmI1MjExZTU4YzAwZmYxMzk1ZjBjMGImbmFtZT1zYW0mdXNlcm5hbWU9c2Ftc2FtJmVtYWlsPXRlc3QlNDB0ZXN0LmNvbSZleHRlcm5hbF9pZD1oZWxsbzEyMyZyZXF1aXJlX2FjdGl2YXRpb249dHJ1ZQ==";
        let expected_sig = "3d7e5ac755a87ae3ccf90272644ed2207984db03cf020377c8b92ff51be3abc3";

        let signed = SignedPayload::from_query(unsigned, &seed_secret);
        assert_eq!(signed.sso, expected_sso);
        assert_eq!(signed.sig, expected_sig);
        assert_eq!(
            signed.redirect_url("http://discuss.example.com/session/sso_login"),
            "http://discuss.example.com/session/sso_login?sso=bm9uY2U9Y2I2ODI1MWVlZmI1MjExZTU4YzAwZmYxMzk1ZjBjMGImbmFtZT1zYW0mdXNlcm5hbWU9c2Ftc2FtJmVtYWlsPXRlc3QlNDB0ZXN0LmNvbSZleHRlcm5hbF9pZD1oZWxsbzEyMyZyZXF1aXJlX2FjdGl2YXRpb249dHJ1ZQ%3D%3D&sig=3d7e5ac755a87ae3ccf90272644ed2207984db03cf020377c8b92ff51be3abc3"
        );

        // The same fields built here encode every pair identically; only the order differs
        // ("order does not matter", says the document).
        let mut payload = Payload::new();
        payload
            .set(Field::Nonce, SEED_NONCE)
            .set(Field::Name, "sam")
            .set(Field::Username, "samsam")
            .set(Field::Email, "test@test.com")
            .set(Field::ExternalId, "hello123")
            .set_bool(Field::RequireActivation, true);
        let mut ours: Vec<&str> = Vec::new();
        let encoded = payload.encode_query();
        ours.extend(encoded.split('&'));
        let mut theirs: Vec<&str> = unsigned.split('&').collect();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(ours, theirs);

        let decoded = Payload::decode(expected_sso, expected_sig, &seed_secret).unwrap();
        assert_eq!(decoded, payload);
    }

    #[test]
    fn issue_vector_signs_and_verifies() {
        let request = SsoRequest {
            nonce: SEED_NONCE.to_owned(),
            return_sso_url: FORUM_RETURN_URL.to_owned(),
        };
        let signed = request.sign(&secret());
        assert_eq!(
            signed.sig,
            "9ae106491ca7a29d236aadeb41cb6d29a6b083700714ca9364436f7253c320cf"
        );
        assert_eq!(
            BASE64.decode(&signed.sso).unwrap(),
            b"nonce=cb68251eefb5211e58c00ff1395f0c0b&return_sso_url=http%3A%2F%2Fforum.example%2Fsession%2Fsso_login"
        );
        assert_eq!(
            SsoRequest::verify(&signed.query_string(), &secret()).unwrap(),
            request
        );
    }

    #[test]
    fn every_key_round_trips_with_awkward_values() {
        let mut payload = Payload::new();
        for field in Field::ALL {
            payload.set(field, format!("{} ~+&=%20 ünï ☃ 名前 a+b=c&d", field.key()));
        }
        payload
            .set_bool(Field::Admin, true)
            .set_bool(Field::Moderator, false)
            .set_groups(Field::Groups, &["staff", "trust_level_2", "Zoë's"])
            .set_groups::<&str>(Field::RemoveGroups, &[])
            .set(Field::Name, "Zoë Ångström-山田 🦀")
            .set(Field::Username, "zoë_山田")
            .set(Field::Email, "zoe+forum@example.org")
            .set(Field::Bio, "line one\nline two\r\n\ttabbed")
            .set_custom("user_field_1", "a~b+c&d=e")
            .set_custom("ünïcode name", "値 = value & more")
            .set_custom("empty", "");

        let signed = payload.sign(&secret());
        assert!(!signed.sso.contains(['+', '/']), "{}", signed.sso);
        let (sso, sig) = parse_sso_query(&signed.query_string()).unwrap();
        assert_eq!(
            (sso.as_str(), sig.as_str()),
            (signed.sso.as_str(), signed.sig.as_str())
        );
        let decoded = Payload::decode(&sso, &sig, &secret()).unwrap();
        assert_eq!(decoded, payload);
        assert_eq!(
            decoded.get(Field::Groups),
            Some("staff,trust_level_2,Zoë's")
        );
        assert_eq!(decoded.get(Field::RemoveGroups), Some(""));
        assert_eq!(decoded.get_bool(Field::Admin), Some(true));
        assert_eq!(decoded.get_bool(Field::Moderator), Some(false));
        assert_eq!(decoded.custom("ünïcode name"), Some("値 = value & more"));
    }

    #[test]
    fn query_encoding_is_strict_form_encoding() {
        let mut payload = Payload::new();
        payload
            .set(Field::Name, "a b~*-._+&=é/?!'()")
            .set(Field::Nonce, "n")
            .set_custom("x y", "1");
        assert_eq!(
            payload.encode_query(),
            "name=a+b%7E*-._%2B%26%3D%C3%A9%2F%3F%21%27%28%29&nonce=n&custom.x+y=1"
        );
    }

    #[test]
    fn inner_query_reads_spaces_drops_unknown_keys_and_ignores_valueless_keys() {
        let payload = Payload::from_query(
            "name=a+b%20c&foo=bar&custom.=dropped&custom.team=x%2By&prompt=none&bio&&title=%zz%4",
        )
        .unwrap();
        let mut expected = Payload::new();
        expected
            .set(Field::Name, "a b c")
            .set(Field::Title, "%zz%4")
            .set_custom("team", "x+y");
        assert_eq!(payload, expected);
    }

    #[test]
    fn redirect_url_appends_to_any_existing_query() {
        let signed = SignedPayload {
            sso: "YQ==".to_owned(),
            sig: "ab".to_owned(),
        };
        let cases = [
            (
                "https://f.example/session/sso_login",
                "https://f.example/session/sso_login?sso=YQ%3D%3D&sig=ab",
            ),
            (
                "https://f.example/sso?lang=de",
                "https://f.example/sso?lang=de&sso=YQ%3D%3D&sig=ab",
            ),
            (
                "https://f.example/sso?",
                "https://f.example/sso?sso=YQ%3D%3D&sig=ab",
            ),
            (
                "https://f.example/sso?a=1&",
                "https://f.example/sso?a=1&sso=YQ%3D%3D&sig=ab",
            ),
            (
                "https://f.example/sso#top",
                "https://f.example/sso?sso=YQ%3D%3D&sig=ab#top",
            ),
        ];
        for (base, expected) in cases {
            assert_eq!(signed.redirect_url(base), expected, "{base}");
        }
    }

    #[test]
    fn sso_query_is_form_decoded_once_and_other_parameters_ignored() {
        let (sso, sig) =
            parse_sso_query("?lang=de&sso=YW%2Bi%2Fc%3D%0A&x&sig=abc%31&sso_extra=1").unwrap();
        assert_eq!(sso, "YW+i/c=\n");
        assert_eq!(sig, "abc1");
        // A raw `+` is a space after decoding, as in Rack.
        let (sso, _) = parse_sso_query("sso=YW+i&sig=").unwrap();
        assert_eq!(sso, "YW i");
    }

    #[test]
    fn missing_and_repeated_parameters_are_refused() {
        let sig = secret().sign("YQ==");
        let cases = [
            (format!("sig={sig}"), ConnectError::MissingSso),
            ("sso=YQ%3D%3D".to_owned(), ConnectError::MissingSig),
            ("".to_owned(), ConnectError::MissingSso),
            (
                format!("sso=YQ%3D%3D&sig={sig}&sso=Yg%3D%3D"),
                ConnectError::RepeatedSso,
            ),
            (
                format!("sso=YQ%3D%3D&sig={sig}&%73ig={sig}"),
                ConnectError::RepeatedSig,
            ),
        ];
        for (query, expected) in cases {
            let error = SsoRequest::verify(&query, &secret()).unwrap_err();
            assert_eq!(error, expected, "{query}");
            assert_message_is_safe(&error, &[&query, &sig]);
        }
        // Non-ASCII bytes are outside both alphabets.
        assert_eq!(
            parse_sso_query("sso=%FF&sig=a").unwrap_err(),
            ConnectError::OutsideBase64Alphabet
        );
        assert_eq!(
            parse_sso_query("sso=YQ&sig=%FF").unwrap_err(),
            ConnectError::MalformedSig
        );
    }

    #[test]
    fn empty_and_oversized_payloads_are_refused() {
        assert_refused("", &secret().sign(""), ConnectError::EmptyPayload);
        // 6144 bytes of query are exactly 8192 of Base64.
        let mut largest = Payload::new();
        largest.set(
            Field::Nonce,
            "a".repeat(MAX_SSO_LEN / 4 * 3 - "nonce=".len()),
        );
        let signed = largest.sign(&secret());
        assert_eq!(signed.sso.len(), MAX_SSO_LEN);
        assert_eq!(
            Payload::decode(&signed.sso, &signed.sig, &secret()).unwrap(),
            largest
        );
        let over = "A".repeat(MAX_SSO_LEN + 1);
        assert_refused(
            &over,
            &secret().sign(&over),
            ConnectError::PayloadTooLong {
                len: MAX_SSO_LEN + 1,
            },
        );
    }

    #[test]
    fn characters_outside_the_base64_alphabet_are_refused() {
        // `>>>` encodes to `Pj4+`, so this Base64 holds both `+` and `/` (from `?`).
        let signed = SignedPayload::from_query("nonce=>>>&return_sso_url=??", &secret());
        assert!(
            signed.sso.contains('+') && signed.sso.contains('/'),
            "{}",
            signed.sso
        );
        let url_safe = signed.sso.replace('+', "-").replace('/', "_");
        assert_refused(
            &url_safe,
            &secret().sign(&url_safe),
            ConnectError::OutsideBase64Alphabet,
        );

        // The same text left unescaped in a URL: its `+` arrives as a space.
        let raw = format!("sso={}&sig={}", signed.sso, signed.sig);
        assert_eq!(
            SsoRequest::verify(&raw, &secret()).unwrap_err(),
            ConnectError::OutsideBase64Alphabet
        );
        // Escaped properly it is accepted.
        assert!(Payload::decode(&signed.sso, &signed.sig, &secret()).is_ok());

        // A value that was never URL-decoded still holds `%`.
        let undecoded = "bm9uY2U9YQ%3D%3D";
        assert_refused(
            undecoded,
            &secret().sign(undecoded),
            ConnectError::OutsideBase64Alphabet,
        );
        let tabbed = "bm9u\tY2U9YQ==";
        assert_refused(
            tabbed,
            &secret().sign(tabbed),
            ConnectError::OutsideBase64Alphabet,
        );
    }

    #[test]
    fn signed_text_that_is_not_base64_is_refused() {
        for text in ["A", "AB=C", "bm9uY2U9YQ===", "=bm9u"] {
            let signed = signed_text(text);
            assert_refused(&signed.sso, &signed.sig, ConnectError::InvalidBase64);
        }
    }

    #[test]
    fn payloads_that_are_not_utf8_are_refused() {
        let raw_bytes = signed_text(&BASE64.encode([b'n', b'a', b'm', b'e', b'=', 0xff, 0xfe]));
        assert_refused(&raw_bytes.sso, &raw_bytes.sig, ConnectError::NotUtf8);
        let escaped = SignedPayload::from_query("nonce=a&name=%FF%FE", &secret());
        assert_refused(&escaped.sso, &escaped.sig, ConnectError::NotUtf8);
        let escaped_key = SignedPayload::from_query("nonce=a&%C3=b", &secret());
        assert_refused(&escaped_key.sso, &escaped_key.sig, ConnectError::NotUtf8);
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let signed = SsoRequest {
            nonce: SEED_NONCE.to_owned(),
            return_sso_url: FORUM_RETURN_URL.to_owned(),
        }
        .sign(&secret());
        let too_long = format!("{}0", signed.sig);
        let non_hex = format!("{}g", &signed.sig[1..]);
        let cases = [
            signed.sig.to_uppercase(),
            signed.sig[1..].to_owned(),
            too_long,
            non_hex,
            String::new(),
            format!(" {}", &signed.sig[1..]),
        ];
        for sig in cases {
            assert_refused(&signed.sso, &sig, ConnectError::MalformedSig);
        }
    }

    #[test]
    fn wrong_signatures_are_refused_as_mismatch() {
        let request = SsoRequest {
            nonce: SEED_NONCE.to_owned(),
            return_sso_url: FORUM_RETURN_URL.to_owned(),
        };
        let signed = request.sign(&secret());

        let mut flipped = signed.sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_refused(&signed.sso, &flipped, ConnectError::SignatureMismatch);

        let other_secret = request.sign(&ConnectSecret::new("another-secret-value"));
        assert_refused(
            &other_secret.sso,
            &other_secret.sig,
            ConnectError::SignatureMismatch,
        );

        let tampered = SsoRequest {
            return_sso_url: "http://evil.example/session/sso_login".to_owned(),
            ..request
        }
        .sign(&ConnectSecret::new("guess"));
        assert_refused(&tampered.sso, &signed.sig, ConnectError::SignatureMismatch);

        let error =
            SsoRequest::verify(&request_query(&signed.sso, &flipped), &secret()).unwrap_err();
        assert!(error.is_bad_signature());
    }

    #[test]
    fn repeated_inner_keys_are_refused() {
        let cases = [
            ("nonce=a&groups=x&groups=y", "groups"),
            ("nonce=a&nonce=a", "nonce"),
            ("nonce=a&custom.team=x&custom.team=y", "custom.*"),
            ("nonce=a&foo=1&foo=2", "(unrecognised)"),
            ("nonce=a&name&name=b", "name"),
            ("nonce=a&name=x&n%61me=b", "name"),
        ];
        for (query, key) in cases {
            let signed = SignedPayload::from_query(query, &secret());
            assert_refused(&signed.sso, &signed.sig, ConnectError::RepeatedKey { key });
        }
    }

    #[test]
    fn requests_without_nonce_or_return_url_are_refused() {
        let cases = [
            (
                "return_sso_url=http%3A%2F%2Fforum.example",
                ConnectError::MissingNonce,
            ),
            (
                "nonce=&return_sso_url=http%3A%2F%2Fforum.example",
                ConnectError::MissingNonce,
            ),
            ("nonce=abc", ConnectError::MissingReturnSsoUrl),
            (
                "nonce=abc&return_sso_url=",
                ConnectError::MissingReturnSsoUrl,
            ),
            (
                "nonce=abc&return_sso_url",
                ConnectError::MissingReturnSsoUrl,
            ),
        ];
        for (inner, expected) in cases {
            let signed = SignedPayload::from_query(inner, &secret());
            let error = SsoRequest::verify(&signed.query_string(), &secret()).unwrap_err();
            assert_eq!(error, expected, "{inner}");
            assert_message_is_safe(&error, &[&signed.sso, &signed.sig]);
        }
    }

    /// Issue 15, fault 6: the URL parser drops raw tabs and line breaks, so a signed
    /// `return_sso_url` holding one used to pass the forum check at `/sso` and fail with a 500
    /// after the login. Any text that is not its own canonical form is now refused up front.
    #[test]
    fn a_return_url_that_is_not_its_canonical_form_is_refused() {
        let refused = [
            "http://forum.example/session/sso\r\n_login",
            "http://forum.example/session/sso_login\r\nSet-Cookie: a=b",
            "http://forum.example/session/\tsso_login",
            "http://forum.example/session/sso_login\n",
            " http://forum.example/session/sso_login",
            "HTTP://forum.example/session/sso_login",
            "http://FORUM.example/session/sso_login",
            "http://forum.example:80/session/sso_login",
            "http://forum.example/session/sso login",
            "http://forum.example/session/../session/sso_login",
            "http://forum.example",
            "/session/sso_login",
        ];
        for url in refused {
            let request = SsoRequest {
                nonce: SEED_NONCE.to_owned(),
                return_sso_url: url.to_owned(),
            };
            let signed = request.sign(&secret());
            assert_eq!(
                SsoRequest::verify(&signed.query_string(), &secret()),
                Err(ConnectError::NonCanonicalReturnSsoUrl),
                "{url:?}"
            );
        }
        for url in [
            FORUM_RETURN_URL,
            "https://forum.example:8443/session/sso_login",
            "https://forum.example/forum/session/sso_login",
        ] {
            assert!(is_canonical_url(url), "{url}");
        }
    }

    #[test]
    fn base64_with_line_breaks_is_verified_over_the_text_as_sent() {
        let request = SsoRequest {
            nonce: SEED_NONCE.to_owned(),
            return_sso_url: FORUM_RETURN_URL.to_owned(),
        };
        let strict = request.sign(&secret()).sso;
        // Ruby's `Base64.encode64`: lines of 60 characters, each ending in a newline.
        let wrapped: String = strict
            .as_bytes()
            .chunks(60)
            .map(|line| format!("{}\n", std::str::from_utf8(line).unwrap()))
            .collect();
        assert!(wrapped.matches('\n').count() >= 2);
        let crlf = wrapped.replace('\n', "\r\n");
        for sso in [&wrapped, &crlf] {
            let query = request_query(sso, &secret().sign(sso));
            assert!(query.contains("%0A"));
            assert_eq!(SsoRequest::verify(&query, &secret()).unwrap(), request);
        }
        // A signature over the text without its line breaks does not cover what was sent.
        assert_refused(
            &wrapped,
            &secret().sign(&strict),
            ConnectError::SignatureMismatch,
        );
    }

    #[test]
    fn base64_without_padding_is_accepted() {
        let request = SsoRequest {
            nonce: "n".to_owned(),
            return_sso_url: FORUM_RETURN_URL.to_owned(),
        };
        let padded = request.sign(&secret()).sso;
        assert!(padded.ends_with('='), "{padded}");
        let stripped = padded.trim_end_matches('=');
        let query = request_query(stripped, &secret().sign(stripped));
        assert_eq!(SsoRequest::verify(&query, &secret()).unwrap(), request);
    }

    #[test]
    fn keying_matches_hmac_for_secrets_of_every_length() {
        for length in 0..=150 {
            let key: Vec<u8> = (0..length).map(|i| (i * 7 + 3) as u8).collect();
            let mut reference = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            reference.update(b"bm9uY2U9YQ==");
            assert_eq!(
                ConnectSecret::new(&key).sign("bm9uY2U9YQ=="),
                hex::encode(reference.finalize().into_bytes()),
                "key length {length}"
            );
        }
    }

    #[test]
    fn debug_output_hides_secret_and_credentials() {
        let secret_debug = format!("{:?}", secret());
        assert!(!secret_debug.contains(SECRET));
        let signed = SignedPayload::from_query("nonce=abcdef", &secret());
        let signed_debug = format!("{signed:?}");
        assert!(!signed_debug.contains(&signed.sso), "{signed_debug}");
        assert!(!signed_debug.contains(&signed.sig), "{signed_debug}");
    }

    fn arbitrary_payload() -> impl Strategy<Value = Payload> {
        // Sizes keep the worst case (every byte escaped) under MAX_SSO_LEN.
        let value = "(?s).{0,12}";
        let fields =
            proptest::collection::btree_map(0..Field::ALL.len(), value, 0..=Field::ALL.len());
        let custom = proptest::collection::btree_map("(?s).{1,8}", value, 0..4);
        // Every real payload carries a nonce; an empty one would be refused as empty.
        (value, fields, custom).prop_map(|(nonce, fields, custom)| {
            let mut payload = Payload::new();
            payload.set(Field::Nonce, nonce);
            for (index, value) in fields {
                payload.set(Field::ALL[index], value);
            }
            for (name, value) in custom {
                payload.set_custom(name, value);
            }
            payload
        })
    }

    proptest! {
        #[test]
        fn built_payloads_round_trip_and_never_need_url_escaping(payload in arbitrary_payload()) {
            let signed = payload.sign(&secret());
            prop_assert!(!signed.sso.contains(['+', '/']), "{}", signed.sso);
            let (sso, sig) = parse_sso_query(&signed.query_string()).unwrap();
            prop_assert_eq!(Payload::decode(&sso, &sig, &secret()).unwrap(), payload);
        }
    }
}
