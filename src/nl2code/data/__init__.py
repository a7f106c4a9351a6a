"""Data: records, source loaders, tokenizer, noising and batching."""
