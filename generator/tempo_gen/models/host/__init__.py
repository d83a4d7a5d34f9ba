"""The sections about the host itself rather than the containers: its firewall, monitoring and backups."""
