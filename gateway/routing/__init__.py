"""Complexity routing: score each request (``scorer``) from features shared with training (``features``)."""

from .scorer import Scorer, default_scorer, score

__all__ = ["Scorer", "default_scorer", "score"]
