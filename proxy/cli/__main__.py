"""`python -m proxy.cli`: the `switchyard` command."""

import sys

from proxy.cli.main import main

sys.exit(main())
