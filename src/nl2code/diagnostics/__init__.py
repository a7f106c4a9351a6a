"""Measurements of model internals (``codefusion``: CodeFusion, issue #18)."""
