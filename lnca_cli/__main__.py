"""`python -m lnca_cli` runs the command-line tool."""
from lnca_cli.cli import app

app(prog_name="lnca")
