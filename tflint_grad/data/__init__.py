"""Packaged data tables (TOML)."""
