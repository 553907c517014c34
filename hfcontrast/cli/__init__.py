"""The command-line layer of the recipes: argument dataclasses (the flags and their ``--help``), the run
bodies (set up, evaluate before and after, train, write the artefacts) and the translation of the library's
field names into flag names. ``recipes/*.py`` are wiring over it; the library below never imports it."""
