//! OpenID Connect Back-Channel Logout 1.0 §2.4/§2.6: validation of `logout_token`s. Pure: `now` is an argument.
