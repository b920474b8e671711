"""Safety and privacy: offline PII/secret detection and redaction (`pii.py`, its detectors in `pii_detectors.py`),
toxicity scoring (`toxicity.py`, its model loaded on first use) and the guard that flags or blocks an answer
(`guard.py`). Import the module you need: this package imports nothing.
"""
