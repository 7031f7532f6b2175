"""Shipped router artifacts: router-v<N>.npz (weights) and router-v<N>.json (model card data)."""
