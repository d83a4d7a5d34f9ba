"""Targets to files: the Jinja environment, the pipeline, output checks, the manifest and the atomic writer."""
