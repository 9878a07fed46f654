"""Offline helpers for tests and smoke-mode notebooks: tiny tokenizers and tiny models."""
