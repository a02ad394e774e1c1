"""`python -m hilsim` is the same as the `hilsim` console script."""

from hilsim.cli import main

raise SystemExit(main())
