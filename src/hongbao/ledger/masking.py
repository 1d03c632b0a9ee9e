"""The ledger's name for `hongbao.wire.masking.mask`, the one secret masker.

Kept for the ledger's store and the dashboard, which import it from here; new code imports
`hongbao.wire.masking`.
"""

from __future__ import annotations

from hongbao.wire.masking import MASK, mask

__all__ = ["MASK", "mask"]
