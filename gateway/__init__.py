"""Tiergate: an OpenAI-compatible gateway that cuts LLM inference cost."""

import os

# Prices come from the cost map bundled with the pinned litellm, never fetched at run time: a gateway
# must start offline, and the ledger's prices must not change underneath it without a release.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
