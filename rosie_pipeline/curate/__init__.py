"""Curation: normalisation, language ID, quality rules, PII redaction, safety filter, dedup."""
