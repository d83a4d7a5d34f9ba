"""Deploys and upgrades of a running Compose stack that roll back (rollout.py, upgrade.py), and the ongoing
checks `audit --live` adds (ongoing.py)."""
