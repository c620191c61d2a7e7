"""`python -m firmware_py.cli`: the same as the `accessctl` command."""

import sys

from firmware_py.cli.main import main

sys.exit(main())
