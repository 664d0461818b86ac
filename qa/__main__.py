"""`python -m qa` runs the CLI."""

from .cli import run

run()
