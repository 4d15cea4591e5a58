"""Paired image sources, layouts, synthesizers and paired transforms (installed as
pan_cli.datasets)."""
