"""``python -m farm_lab up|down|status``: the lab's commands without the ``farm`` front end."""

from .cli import app

app()
