"""The agent zipapp's ``__main__.py``: run the agent from an unpacked copy beside the archive.

Python imports a zip's modules from source every time (zipimport never writes
``.pyc`` files), so each start of an archive compiles the whole agent again:
130 ms of a simulated board's 150 ms ``serve`` start. The first start unpacks the
archive into a folder named like it (``agent-HASH.pyz`` -> ``agent-HASH.d``) and renames
it into place in one atomic step, so no process ever sees half a copy; from then on a
start costs what importing compiled modules costs. Where
the folder cannot be written (a read-only home), the agent runs from the archive
as before.

This file is deployed as the archive's ``__main__.py`` (``orchestrator/deploy.py``)
and imports only the standard library: the agent is not importable before it runs.
"""

import os
import sys


def unpacked_folder(archive):
    """The folder this archive's agent runs from: ``archive`` itself when it cannot be unpacked."""
    stem = archive[:-len(".pyz")] if archive.endswith(".pyz") else archive  # noqa: FURB188 - Python 3.6
    target = stem + ".d"
    if os.path.isfile(os.path.join(target, "agent", "__init__.py")):
        return target
    # Only to unpack: importing these costs more than the rest of a start from the folder.
    import compileall
    import shutil
    import zipfile

    temporary = "{}.tmp-{}".format(target, os.getpid())
    try:
        shutil.rmtree(temporary, ignore_errors=True)
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(temporary)
        # Where PYTHONDONTWRITEBYTECODE (or -B) stops imports from writing byte code, it is written here, for
        # later starts to read; elsewhere each module is compiled by its first import, so a first start
        # compiles only what that start imports.
        if sys.dont_write_bytecode:
            compileall.compile_dir(temporary, quiet=1)
        os.rename(temporary, target)
    except (OSError, IOError, zipfile.BadZipfile):
        # Another agent starting at the same moment may have renamed its copy first: then use that one.
        shutil.rmtree(temporary, ignore_errors=True)
        if not os.path.isfile(os.path.join(target, "agent", "__init__.py")):
            return archive
    return target


def main():
    archive = os.path.abspath(sys.argv[0])
    folder = unpacked_folder(archive) if os.path.isfile(archive) else archive
    # The archive is sys.path[0] when Python runs it; the copy takes its place (argv[0] stays the archive,
    # which is how the agent finds its state folder).
    if sys.path and os.path.abspath(sys.path[0]) == archive:
        sys.path[0] = folder
    else:
        sys.path.insert(0, folder)
    from agent.__main__ import main as agent_main

    return agent_main()


if __name__ == "__main__":
    sys.exit(main())
