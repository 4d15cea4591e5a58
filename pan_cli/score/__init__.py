"""Scores as papers compute them, classical baselines, `pan compare` and `pan report`."""
