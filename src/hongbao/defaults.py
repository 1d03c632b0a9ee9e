"""Defaults and environment variable names a user meets, in a module that imports nothing.

They live here, below every layer, so that the command line can show them in its help without
loading the layers that use them (the ledger, the simulator's server, the dashboard). Each of
those re-exports its own under its old name.
"""

from __future__ import annotations

__all__ = [
    "CONFIG_ENV",
    "DASHBOARD_TOKEN_ENV",
    "DEFAULT_LEDGER_URL",
    "DEFAULT_PAY_TIMEOUT",
    "SIM_PORT",
]

CONFIG_ENV = "HONGBAO_CONFIG"
"""Environment variable naming the configuration file when `--config` is not given."""
DEFAULT_LEDGER_URL = "sqlite:///hongbao.db"
"""A SQLite file in the current directory."""
SIM_PORT = 8443
"""The port the simulator serves on by default."""
DASHBOARD_TOKEN_ENV = "HONGBAO_DASHBOARD_TOKEN"  # noqa: S105 (a variable name, not a secret)
"""Environment variable holding the dashboard's access token."""
DEFAULT_PAY_TIMEOUT = 30.0
"""Seconds `pay(wait=True)` and `hongbao send` wait for an outcome by default."""
