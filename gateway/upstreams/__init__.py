"""Calling upstream deployments: OpenAI-wire byte relay, litellm for translated providers, retries."""
