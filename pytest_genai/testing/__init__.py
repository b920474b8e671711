"""Test helpers shipped with pytest-genai (a deterministic OpenAI-compatible stub server)."""
