"""`python -m scorehouse ...`: the same CLI as the `scorehouse` command."""

from scorehouse.cli import main

raise SystemExit(main())
