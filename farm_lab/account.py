"""The login account of the simulated lab's hosts.

Run as root, the lab logs in as a dedicated unprivileged user, ``farmlab``, as
a real farm would: the agent then meets the same permission walls it meets on
a device. Run as anyone else, sshd can only authenticate the user it runs as,
so the lab logs in as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import FarmError

LAB_USER = "farmlab"
LAB_HOME = Path("/home") / LAB_USER


class LabError(FarmError):
    """The simulated lab cannot be set up or used as asked."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: Path

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        """Run ``argv`` as this account, with its home and a clean environment."""
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "PATH": "/usr/bin:/bin",
               "LANG": "C.UTF-8"}
        identity = {} if self.is_self else {"user": self.uid, "group": self.gid, "extra_groups": []}
        try:
            return subprocess.run(argv, env=env, cwd=self.home, capture_output=True, text=True, check=False,
                                  **identity, **kwargs)  # type: ignore[call-overload]
        except OSError as exc:  # e.g. the interpreter is in a directory this account cannot enter
            return subprocess.CompletedProcess(argv, 126, "", f"{argv[0]}: {exc.strerror}")

    def chown(self, path: Path) -> None:
        """Give ``path`` and everything below it to this account (a no-op when it is us)."""
        if self.is_self:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)


def lab_account() -> Account:
    """The account lab hosts log in as: ``farmlab`` (created if need be) as root, else ourselves."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
    return ensure_lab_user()


def ensure_lab_user() -> Account:
    try:
        entry = pwd.getpwnam(LAB_USER)
    except KeyError:
        entry = _create_user()
    # useradd leaves the account locked ('!' in /etc/shadow), and sshd without PAM
    # refuses locked accounts even for key logins; '*' means "no password" without locking.
    if _password_field(LAB_USER) != "*":
        _call(["usermod", "-p", "*", LAB_USER], "unlock the lab user")
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, home)


def _create_user() -> pwd.struct_passwd:
    # No /etc/skel copy: the lab's shell must not read start-up files that could print or change things.
    try:
        _call(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(LAB_HOME),
               "--shell", "/bin/sh", "--comment", "farm simulated lab", LAB_USER], "create the lab user")
    except LabError:
        try:
            return pwd.getpwnam(LAB_USER)  # another lab created it meanwhile
        except KeyError:
            pass
        raise
    return pwd.getpwnam(LAB_USER)


def _password_field(name: str) -> str | None:
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name and len(fields) > 1:
                return fields[1]
    except OSError:
        pass
    return None


def _call(argv: list[str], purpose: str) -> None:
    tool = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/sbin")
    if tool is None:
        raise LabError(f"cannot {purpose}: {argv[0]} is not installed (it comes with the 'passwd' package).")
    for _ in range(20):
        done = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, check=False)
        # Another useradd/usermod (a second lab starting, a package install) holds /etc/passwd's lock: wait.
        if done.returncode == 0 or "lock" not in done.stderr:
            break
        time.sleep(0.25)
    if done.returncode != 0:
        raise LabError(f"cannot {purpose}: {' '.join(argv)} failed: {done.stderr.strip() or done.returncode}")
