"""The typed profile: frozen pydantic models, unknown keys refused, cross-field rules."""
