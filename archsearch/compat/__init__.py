"""What archsearch relies on in its dependencies beyond their public API, and its patches of them, one module each."""
