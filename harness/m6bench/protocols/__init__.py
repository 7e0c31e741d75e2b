"""Protocols: deterministic train/valid/test cuts, validated, fingerprinted and cached."""
