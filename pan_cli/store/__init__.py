"""Checkpoints and exports: writing a model out and reading one back, as untrusted input."""
