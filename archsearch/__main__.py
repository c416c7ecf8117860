"""`python -m archsearch` is the `archsearch` command."""

import sys

from archsearch.cli import console_main

sys.exit(console_main())
