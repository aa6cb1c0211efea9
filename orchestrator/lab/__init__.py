"""The simulated lab: real OpenSSH servers on loopback addresses, each posing as a board.

``farm lab up`` (see :mod:`.cli`) builds it; :class:`.lab.Lab` is the same from Python.
Modules: ``boards`` (what each board looks like), ``pythons`` (its interpreter and
runtime), ``account`` (the login user), ``sshd`` (one server), ``lab`` (all of them).
"""
