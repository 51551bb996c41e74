"""Exercise checkers, one module per chapter (``kqvlib.exercises.ch01`` …). See :mod:`kqvlib.checks`."""
