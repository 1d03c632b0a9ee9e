"""The HTTP API's OpenAPI document, as `/openapi.json` serves it and docs/openapi.json keeps it.

`python -m hongbao.service.openapi > docs/openapi.json` writes it again after a change to the
API; a test fails while the two differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hongbao.engine.config import parse_config

__all__ = ["document", "main"]


def document() -> dict[str, Any]:
    """The OpenAPI document of the API (no configuration needed)."""
    from hongbao.service.app import create_app

    return create_app(parse_config({}, Path("hongbao.toml"), environ={})).openapi()


def main() -> None:
    """Print the document as docs/openapi.json keeps it."""
    sys.stdout.write(json.dumps(document(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
