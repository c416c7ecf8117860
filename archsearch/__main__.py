"""`python -m archsearch` is the `archsearch` command."""

import sys

from archsearch.cli.main import console_main

sys.exit(console_main())
