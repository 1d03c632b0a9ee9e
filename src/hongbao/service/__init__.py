"""`hongbao serve`: the HTTP API over the ledger and the dispatch core (see docs/http-api.md)."""
