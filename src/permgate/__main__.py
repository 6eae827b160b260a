"""`python -m permgate` runs the CLI."""

from permgate.cli import main

raise SystemExit(main())
