"""The package's public surface: `__all__` lists exactly the public names, sorted."""

from __future__ import annotations

from types import ModuleType

import hongbao


def test_all_lists_exactly_the_public_names_sorted() -> None:
    public = {
        name
        for name in dir(hongbao)
        if not name.startswith("_") and not isinstance(getattr(hongbao, name), ModuleType)
    }
    assert hongbao.__all__ == sorted(public | {"__version__"})


def test_the_clients_and_merchant_are_importable_from_the_package() -> None:
    from hongbao import AsyncClient, Client, Merchant
    from hongbao.api.client import AsyncClient as ApiAsyncClient
    from hongbao.api.client import Client as ApiClient
    from hongbao.api.merchant import Merchant as ApiMerchant

    assert (Client, AsyncClient, Merchant) == (ApiClient, ApiAsyncClient, ApiMerchant)


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    assert not hasattr(hongbao, "Nonexistent")
