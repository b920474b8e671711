"""`pytest-genai reproduce RUN`: re-run a logged eval from its artifacts and diff it with the run.

source.py finds the run (a run folder or an MLflow run's artifacts), checks.py compares the environment and the
git commit with the run's, workdir.py lays out the re-run's temporary project, rerun.py runs pytest on it, diff.py
compares the two records, cli.py is the command. Importing this package imports none of them."""
