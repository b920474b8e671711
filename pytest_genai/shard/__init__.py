"""Sharded evals: `--genai-shard I/N` runs a stable share of the cases as a child run of the eval's group;
`pytest-genai merge ID` aggregates the shards into the parent run, as if the eval had run on one machine."""
