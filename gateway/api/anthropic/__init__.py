"""The Anthropic Messages API (`POST /v1/messages`), translated onto the gateway's pipeline."""
