"""Exercise checkers, one per exercise, grouped by chapter: ``kqvlib.exercises.ch01`` … (a module, or a
small package split by exercise where a chapter's checkers outgrow ~300 lines). The slips several
chapters share are in ``kqvlib.exercises.common``; the mechanism is :mod:`kqvlib.checks`."""
