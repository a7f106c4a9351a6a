"""Metrics as pure functions: pass@k, BLEU, exact match, CodeBLEU, CodeBERTScore, diversity, ..."""
