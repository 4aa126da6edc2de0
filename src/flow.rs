//! The login in flight, kept in an encrypted, authenticated cookie per attempt (state, nonces, PKCE verifier).
