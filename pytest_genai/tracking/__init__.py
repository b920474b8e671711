"""Tracking: git and environment capture, the local run folder, MLflow logging."""
