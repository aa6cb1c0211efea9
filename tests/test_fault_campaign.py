"""The fault campaign's short form: ten faults of every kind on the namespaced lab, nothing lost or doubled.

The long form is one command: .venv/bin/python bench/fault_campaign.py --faults 100
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchestrator.lab import sshd as lab_sshd
from orchestrator.lab.campaign import FAULT_KINDS, Campaign, tcp_connections
from tests.conftest import PG_SERVER, missing_service

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_ten_faults_lose_and_double_nothing(tmp_path: Path, pg_server: str) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None or not lab_sshd.SSHD.is_file():
        missing_service("the fault campaign needs root (network namespaces), iproute2 and OpenSSH server")
    with Campaign(tmp_path / "campaign", faults=10, seed=11, hosts=3, server_url=PG_SERVER,
                  round_faults=5) as campaign:
        report = campaign.run()
    summary = report.summary()
    print(f"\nfault campaign: {summary}")
    assert report.problems == [], (report.problems, (tmp_path / "campaign" / "controller.log").read_text()[-4000:])
    assert sum(report.injected.values()) >= 10
    assert set(report.injected) == set(FAULT_KINDS)  # every kind at least once
    assert report.reference["counts"].get("succeeded", 0) > 0
    # A controller killed mid-run was resumed, and said so.
    assert report.resume_seconds


def test_tcp_connections_sees_this_process_sockets() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            local = client.getsockname()[1]
            assert tcp_connections(os.getpid(), "127.0.0.1", port) == {local}
        assert tcp_connections(os.getpid(), "127.0.0.2", port) == set()
