"""Reports of a run (terminal now; HTML and CI summaries later)."""
