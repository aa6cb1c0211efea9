"""farm: a device-farm orchestrator for edge-AI benchmarking (the controller)."""

__version__ = "0.1.0"
