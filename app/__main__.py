"""`python -m app <command>`: the same entry point as the `stepline` console script."""

from app.cli import main

raise SystemExit(main())
