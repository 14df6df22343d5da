"""Signing and verification: our ED25519 keys, fal-style callbacks, Standard Webhooks."""
