"""Samples for `hongbao rules test`: verified payment notifications kept as received.

`hongbao rules serve --save-notifications DIR` writes the body of each payment notification
whose signature verified to `DIR/<transaction_id>.xml`, byte for byte, so that
`hongbao rules test DIR/<transaction_id>.xml` judges a real one. A body holds WeChat's `sign`
(which `rules test` verifies) and the customer's openid: the directory is created private
(0700), each file is written private (0600), and neither the bodies nor their fields are ever
logged. A redelivered notification replaces its file atomically (same payment, same name).

>>> samples = NotificationSamples(Path("samples"))  # doctest: +SKIP
>>> samples.save(payment.transaction_id, body)  # doctest: +SKIP
PosixPath('samples/4200001234202401011234567890.xml')
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from hongbao.engine.filemodes import warn_if_exposed
from hongbao.errors import ConfigurationError
from hongbao.printable import printable

__all__ = ["NotificationSamples"]

logger = logging.getLogger("hongbao.rules")

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A transaction_id that is safe as a file name (WeChat's are 28 digits)."""
_WHAT = "--save-notifications directory (notifications' signatures and openids)"


class NotificationSamples:
    """A private directory of verified notification bodies, one file per transaction_id."""

    def __init__(self, directory: Path) -> None:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"--save-notifications: cannot create {directory}: {exc.strerror or exc}"
            ) from None
        if not directory.is_dir():
            raise ConfigurationError(f"--save-notifications: {directory} is not a directory")
        warn_if_exposed(directory, _WHAT)
        self.directory = directory

    def __repr__(self) -> str:
        return f"NotificationSamples({str(self.directory)!r})"

    def save(self, transaction_id: str, body: bytes) -> Path | None:
        """Write `body` as `<transaction_id>.xml` (mode 0600); None when it could not be.

        A failure is logged (never the body) and does not change the notification's answer.
        """
        if not _NAME.fullmatch(transaction_id):
            logger.warning(
                "notification of payment %s not saved: a transaction_id must be 1-64 letters, "
                "digits, '_' or '-' to name a file",
                printable(transaction_id[:64]),
            )
            return None
        path = self.directory / f"{transaction_id}.xml"
        try:
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as file:  # mkstemp creates it 0600
                    file.write(body)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            logger.warning(
                "notification of payment %s not saved in %s: %s",
                transaction_id,
                self.directory,
                exc.strerror or type(exc).__name__,
            )
            return None
        return path
