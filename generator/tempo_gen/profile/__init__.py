"""Reading a profile: YAML with the line of every field, `extends:` and `${VAR}`, and text edits that keep comments."""
