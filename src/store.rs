//! Embedded durable store (redb): relay jobs, replayed `jti`s, login records and ID tokens for logout hints.
