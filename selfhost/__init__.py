"""Self-hosted vLLM tier: catalogue, launcher, load probe, replica pool, on-prem cost model (see README.md)."""
