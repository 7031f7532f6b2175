"""Shipped static embedding artifact (vectors.npz, tokenizer.json); see README.md."""
