from __future__ import annotations

from vlhook.cli import main

raise SystemExit(main())
