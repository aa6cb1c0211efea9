"""The simulated lab: real OpenSSH servers on loopback addresses, each posing as a board.

Test and benchmark tooling, not part of the controller: nothing on ``farm run``'s path
imports this package (tests/test_lab_isolation.py checks it). ``farm lab up`` (see
:mod:`.cli`) builds a lab; :class:`.lab.Lab` is the same from Python.
Modules: ``boards`` (what each board looks like), ``pythons`` (its interpreter and
runtime), ``account`` (the login user), ``sshd`` (one server), ``lab`` (all of them),
``netns`` (hosts in network namespaces), ``campaign`` (the fault campaign),
``hardware``/``board_hardware`` with ``standins/`` (stand-in nvpmodel, jetson_clocks,
vcgencmd and their sysfs), ``standin_compiler`` with ``bin/edgetpu_compiler`` (a stand-in
Edge TPU compiler: the controller finds a compiler only on PATH or by --compiler).
"""

from pathlib import Path

# Give it to the controller as `--compiler`, `$FARM_EDGETPU_COMPILER`, or by putting its directory on PATH.
STANDIN_COMPILER = Path(__file__).resolve().parent / "bin" / "edgetpu_compiler"
