"""Backups: encrypted, verified, pruned, copied off the host; restored and drilled (layout.py is the contract)."""
