"""Safety and privacy building blocks: offline PII/secret detection, redaction, toxicity scoring.

Importing this package is cheap (stdlib only); toxicity models are loaded on first use.
"""

from __future__ import annotations

from .pii import PII_TYPES, Finding, detect, iban_valid, is_placeholder, luhn_valid, placeholder, redact, redact_obj
from .toxicity import ToxicityClassifier, get_classifier

__all__ = [
    "PII_TYPES", "Finding", "detect", "redact", "redact_obj", "placeholder", "is_placeholder",
    "luhn_valid", "iban_valid", "ToxicityClassifier", "get_classifier",
]
