"""The scheduling priority a benchmark runs with, kept across the job process's own session.

Linux groups processes by session for fair CPU sharing (autogroup,
/proc/sys/kernel/sched_autogroup_enabled): a CPU is shared between sessions first, so
``nice`` orders processes only within one session, and a session's weight is its
group's nice (/proc/<pid>/autogroup). A job process starts a session of its own
(``spool``), which would drop the group priority the agent was started with
(``setsid sh -c 'echo -20 > /proc/self/autogroup; exec python ...'`` on a shared
machine); ``keep`` gives the new session the old group's nice.
"""

import os

__all__ = ["autogroup_nice", "describe", "keep"]

_PATH = "/proc/self/autogroup"


def autogroup_nice():
    """This session's group nice (-20 .. 19), or None where the kernel has no autogroup."""
    try:
        with open(_PATH) as handle:
            text = handle.read()  # "/autogroup-113 nice 0"
    except (IOError, OSError):
        return None
    parts = text.split()
    try:
        return int(parts[parts.index("nice") + 1])
    except (ValueError, IndexError):
        return None


def keep(nice):
    """Set this (new) session's group nice to ``nice``; False where the kernel or privileges refuse."""
    if nice is None or nice == autogroup_nice():
        return nice is not None
    try:
        with open(_PATH, "w") as handle:
            handle.write(str(nice))
    except (IOError, OSError):
        return False
    return True


def describe():
    """{"nice", "autogroup_nice"}: what the benchmark process ran with, for its result."""
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        nice = None
    return {"nice": nice, "autogroup_nice": autogroup_nice()}
