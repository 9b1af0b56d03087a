"""Shared test set-up: make the helpers beside this file importable (`graphs`, `float_models`).

tests/ mirrors the packages: tests/compiler/qpk/test_container.py tests
compiler/qpk/container.py (test_container_fuzz.py one aspect of it). Test modules are
imported by basename (pytest's default "prepend" import mode, no `__init__.py` files),
so a file name must be unique across tests/: where a module name occurs in two
packages (cli, lower, build, model), its tests carry the package's name
(test_driver_cli.py, test_frontend_cli.py, test_dataflow_lower.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
