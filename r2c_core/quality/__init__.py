"""Objective restoration quality: a seeded degradation suite (:mod:`.degrade`), full-reference, no-reference and
preservation measures (:mod:`.measures`), and the restoration benchmark that runs any set of methods over a
split (:mod:`.bench`, ``python -m r2c_core restoration-bench``; tables and figures in :mod:`.report`)."""
