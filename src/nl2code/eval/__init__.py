"""Evaluation: a sandbox for untrusted generated code, benchmark tasks, metrics and the harness."""
