"""Monitoring after deploy: the served model records one request record per row (record.py), and
`pytest-genai monitor` aggregates a window of them into the eval's metric names, checked by `monitor.slo`."""
