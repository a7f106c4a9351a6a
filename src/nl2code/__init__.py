"""nl2code."""
