"""Reports on profiles: the audit of weakened defaults and the profile's schema and reference."""
