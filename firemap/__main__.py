"""``python -m firemap`` runs the command line (same as the ``firemap`` console script)."""

from firemap.cli import app

app(prog_name="firemap")
