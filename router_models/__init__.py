"""The complexity router's training, evaluation and shipped artifact (model card: README.md).

Serving lives in ``gateway.routing``; both share ``gateway.routing.features``.
"""
