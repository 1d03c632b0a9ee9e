"""The embedded mode stays free of PostgreSQL and of the job queue."""

from __future__ import annotations

import subprocess
import sys

from tests.distributed.distkit import ROOT


def test_the_cli_and_the_embedded_runner_do_not_import_procrastinate() -> None:
    code = (
        "import sys\n"
        "import hongbao.cli.main, hongbao.engine.runner\n"
        "assert 'procrastinate' not in sys.modules, 'procrastinate imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
