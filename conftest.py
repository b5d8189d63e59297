"""Shared by every test folder: each test starts from the same logging set-up.

A command under test (``msp-hub sync``, the daemon) configures structlog for the process, at the
level its config names; without this, every later test would log at that level.
"""

import pytest
import structlog


@pytest.fixture(autouse=True)
def _restore_structlog():
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
