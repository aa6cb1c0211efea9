"""farm: a device-farm orchestrator for edge-AI benchmarking (the controller).

Importing the controller first binds the name `agent` to farm's own agent package (see own_packages):
a user's `agent/` folder in the working directory or on PYTHONPATH must never be what farm validates
results with or deploys. This guards every way farm starts, except one Python itself decides before farm
runs: `python -m orchestrator` in a directory that holds an `orchestrator/` folder runs that folder.
The `farm` command (and `python -P -m orchestrator`) never look in the working directory.
"""

from .own_packages import bind_agent

__version__ = "0.1.0"

bind_agent()
