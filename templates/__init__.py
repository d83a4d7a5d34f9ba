"""Jinja templates, laid out like the output; shipped in the wheel as tempo_gen.templates."""
