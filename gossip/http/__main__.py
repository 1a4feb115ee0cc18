"""``python -m gossip.http``: run a node (see :mod:`gossip.http.command`)."""

from gossip.http.command import main

raise SystemExit(main())
