"""``python -m gossip``: the command-line client (see :mod:`gossip.cli`)."""

from gossip.cli import main

raise SystemExit(main())
