"""Tests of the `hongbao` commands."""
