"""The `hongbao` command line."""
