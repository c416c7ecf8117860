"""JAX's private names that archsearch uses, in one place.

Written against JAX 0.4.30 to 0.10 (`PINNED`); `tests/test_compat.py`
checks it. Imports nothing: it reads what JAX has already imported.
"""

import sys

PINNED = ("0.4.30", None)  # the versions this module was written against: at least the first (no upper bound)


def backends_may_be_running():
    """Whether JAX's backends may be running in this process, without importing JAX.

    JAX warns that forking once its backends run may deadlock the child. Its
    module `jax._src.xla_bridge` says whether they run
    (`backends_are_initialized()`); not imported, JAX is not in use. Should a
    later JAX drop that function, they are taken to be running.

    Written against JAX 0.4.30-0.10.
    """
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    if xla_bridge is None:
        return False
    initialized = getattr(xla_bridge, "backends_are_initialized", None)
    return initialized is None or bool(initialized())
