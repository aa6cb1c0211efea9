"""The fault campaign, long form: a matrix run on the namespaced lab while random faults land.

Faults (seeded): link cut and restored, sshd killed and restarted, a host's agents SIGKILLed,
the controller SIGKILLed then `farm run --resume`, the scratch database's PostgreSQL backends
terminated. After every round: every job terminal, nothing stored twice or on the wrong job,
every board in its original power mode, and the same cells and counts as a fault-free run.
Prints faults by kind, retries, time to detect a dead link and time to resume; exits 1 on any
problem. Needs root (network namespaces), OpenSSH server and the PostgreSQL at 127.0.0.1:5432.

Run:  .venv/bin/python bench/fault_campaign.py --faults 100
      .venv/bin/python bench/fault_campaign.py --faults 10 --seed 7 --json out.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy.exc import SQLAlchemyError

from farm_lab.account import LabError
from farm_lab.campaign import Campaign, main_json
from orchestrator.errors import FarmError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: bench/fault_campaign.py --faults 100 --seed 1",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=100, help="faults to inject in all (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed, the same faults")
    parser.add_argument("--hosts", type=int, default=3, help="lab hosts (boards cycle nano, rpi4, devboard)")
    parser.add_argument("--per-round", type=int, default=4, help="faults per farm run (default 4)")
    parser.add_argument("--pg", default="postgresql+psycopg://root@127.0.0.1:5432/test",
                        help="a PostgreSQL server URL; the campaign creates and drops its own database there")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    args = parser.parse_args(argv)
    if args.faults < 1 or args.hosts < 1 or args.per_round < 1:
        parser.error("--faults, --hosts and --per-round must be at least 1")
    with tempfile.TemporaryDirectory(prefix="farm-campaign-") as directory:
        try:
            with Campaign(Path(directory), faults=args.faults, seed=args.seed, hosts=args.hosts,
                          server_url=args.pg, round_faults=args.per_round) as campaign:
                report = campaign.run()
        except (FarmError, LabError, SQLAlchemyError, RuntimeError) as exc:  # no lab, no database: say why
            print(f"fault campaign: {exc}", file=sys.stderr)
            return 2
        text = main_json(report)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        if report.problems:
            print(f"{len(report.problems)} problem(s); controller output was in {directory}/controller.log",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
