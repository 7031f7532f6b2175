"""A simulated LLM upstream speaking the OpenAI, Anthropic and Gemini wire protocols.

Used by the demo, the tests and the benchmarks in place of the real providers: deterministic
content, provider-accurate usage and prompt caching, configurable latency and injectable faults.
"""

from .app import SimulatorApp, create_app
from .clock import Clock
from .config import Latency, SimulatorConfig
from .faults import FaultRule
from .server import SimulatorServer

__all__ = [
    "Clock",
    "FaultRule",
    "Latency",
    "SimulatorApp",
    "SimulatorConfig",
    "SimulatorServer",
    "create_app",
]
