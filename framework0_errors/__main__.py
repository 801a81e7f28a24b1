"""Allow ``python -m framework0_errors``."""

from .cli import main

main()
