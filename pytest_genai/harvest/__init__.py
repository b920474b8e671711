"""Traffic -> eval sets: `pytest-genai harvest` samples the served-request records the monitor keeps into a new
eval-set file (sanitized, deduplicated, stratified, each case with its provenance)."""
