"""Shared test set-up: make tests/graphs.py importable as `graphs`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
