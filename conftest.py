"""pytest's collection: the bundled space files are package data that `load_space()` runs, not modules to import.

`--doctest-modules` over `archsearch/` would import each of them as a module
named after its file (`digits`, `cifar`, ...), outside the package.
"""

collect_ignore = ["archsearch/spaces"]
