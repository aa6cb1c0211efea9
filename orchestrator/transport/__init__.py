"""Transports reach hosts: ``local`` for this machine, ``ssh`` for the farm."""

from __future__ import annotations

from ..inventory import Host
from .base import AgentChannel, CommandResult, Transport

__all__ = ["AgentChannel", "CommandResult", "Transport", "open_transport"]


def open_transport(host: Host, **options: object) -> Transport:
    if host.transport == "local":
        from .local import LocalTransport

        return LocalTransport(host)
    from .ssh import SshTransport  # imported late: paramiko is slow to import

    return SshTransport(host, **options)  # type: ignore[arg-type]
