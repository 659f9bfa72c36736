"""``python -m hybridrl`` runs the command line."""

from hybridrl.cli import main

raise SystemExit(main())
