"""The fault campaign's short form: ten faults of every kind on the namespaced lab, nothing lost or doubled.

The long form is one command: .venv/bin/python bench/fault_campaign.py --faults 100
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from farm_lab import sshd as lab_sshd
from farm_lab.campaign import FAULT_KINDS, Campaign, CampaignReport, tcp_connections
from tests.conftest import PG_SERVER, missing_service

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def campaign_report(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> CampaignReport:
    if os.geteuid() != 0 or shutil.which("ip") is None or not lab_sshd.SSHD.is_file():
        missing_service("the fault campaign needs root (network namespaces), iproute2 and OpenSSH server")
    workdir = tmp_path_factory.mktemp("campaign")
    with Campaign(workdir, faults=10, seed=11, hosts=3, server_url=PG_SERVER, round_faults=5) as campaign:
        report = campaign.run()
    print(f"\nfault campaign: {json.dumps(report.summary())}")
    return report


# Problems the campaign can report, split in two: a result lost, doubled or on the wrong job, or a
# board left in another power mode, is never acceptable; a run that ends short of the fault-free
# one's cells (a job failed or left queued) is what the second test checks.
NEVER = ("duplicates", "misattributed", "succeeded_without_result", "result_of_unsucceeded",
         "samples_mismatch", "power mode")


def test_ten_faults_of_every_kind_double_nothing_and_restore_every_board(campaign_report: CampaignReport) -> None:
    assert sum(campaign_report.injected.values()) >= 10
    assert set(campaign_report.injected) == set(FAULT_KINDS)  # every kind at least once
    assert campaign_report.reference["counts"].get("succeeded", 0) > 0
    assert campaign_report.resume_seconds  # a controller killed mid-run was resumed, and said so
    assert [p for p in campaign_report.problems if any(word in p for word in NEVER)] == []


def test_ten_faults_end_like_a_fault_free_run(campaign_report: CampaignReport) -> None:
    assert campaign_report.problems == []


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
