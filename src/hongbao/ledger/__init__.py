"""The ledger: every intended red packet, recorded before it is sent."""
