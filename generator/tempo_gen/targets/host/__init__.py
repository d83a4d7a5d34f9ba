"""Targets whose files are installed on the host itself, not run by Docker: the firewall and monitoring."""
