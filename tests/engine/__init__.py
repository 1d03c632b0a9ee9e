"""Tests of the engine's pure parts: state decisions, pacing, campaign input."""
