"""Tests of the ledger: one contract suite run on SQLite and PostgreSQL."""
