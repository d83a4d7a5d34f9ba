"""Reports: the audit of weakened defaults, the profile's schema and reference, and the drift of out/."""
