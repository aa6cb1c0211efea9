"""farm's own top-level packages (`agent`, `migrations`, `inventory`), found beside `orchestrator` itself.

farm ships four top-level packages side by side, in the repository, in an editable install and in a
wheel's site-packages alike. Looking them up by name through sys.path would let a user's folder win:
`python -m orchestrator` puts the working directory first on sys.path, PYTHONPATH comes next, and an
editable install's finder is consulted only after both, so a user's own `agent/` would be the agent
farm zips and deploys, and a `migrations/` folder without `__init__.py` a namespace package that makes
farm refuse its own database. So farm names them by location: the directory that holds `orchestrator`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FARM_ROOT = Path(__file__).resolve().parent.parent
AGENT_DIR = FARM_ROOT / "agent"
MIGRATIONS_DIR = FARM_ROOT / "migrations"
INVENTORY_DIR = FARM_ROOT / "inventory"


def bind_agent() -> ModuleType:
    """Make `import agent` mean farm's agent for this process, before anything imports it by name.

    The controller imports `agent.schema` (and the toolchain probe `agent.facts`): the wire schema it
    validates results with must be the one it deploys.
    """
    return bind_own_package("agent")


def bind_own_package(name: str) -> ModuleType:
    """Load farm's top-level package ``name`` from beside `orchestrator` and put it in sys.modules.

    Its submodules then come from its own `__path__`, never from sys.path.
    """
    directory = FARM_ROOT / name
    init = directory / "__init__.py"
    loaded = sys.modules.get(name)
    if loaded is not None:
        if _is_file(getattr(loaded, "__file__", None), init):
            return loaded
        where = getattr(loaded, "__file__", None) or list(getattr(loaded, "__path__", []))
        # Replacing it would break whoever imported it; using it would run someone else's code as farm's.
        raise ImportError(f"a package named '{name}' from {where} is already imported, but farm uses its own "
                          f"from {directory}: import orchestrator before that package, or rename it")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(directory)])
    if spec is None or spec.loader is None:
        raise ImportError(f"farm's '{name}' package is missing from {directory}: reinstall farm")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _is_file(path: str | None, expected: Path) -> bool:
    if not path:
        return False
    try:
        return Path(path).resolve().samefile(expected)
    except OSError:
        return False
