//! Durable delivery of logout relay jobs into Discourse, with retries and exponential backoff.
