"""`python -m proxy`: the `switchyard` command."""

import sys

from proxy.cli.main import main

sys.exit(main())
