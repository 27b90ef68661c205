"""Shared by every test file: the helper package tests/helpers/ is importable as ``helpers``.

The test files live in one folder per area (analysis/, data/, engine/, prune/, reliability/,
workflow/); fixtures and configurations they read stay in tests/fixtures/ and tests/configs/.
"""

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
