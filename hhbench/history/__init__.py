"""The history of hhbench runs across commits and machines, and the changes in it.

  * `store`: one schema (SQLAlchemy Core) in SQLite (a file, no set-up) or PostgreSQL
    (psycopg 3): machines, commits, runs, cases, each case's per-process medians and
    samples and its accuracy, marks (intended changes) and exclusions;
  * `series`: a (machine, case, metric) series from the store, ordered by commit ancestry;
  * `changes`: change points in a series, each confirmed by hhbench's process-level test;
  * `export`, `asv_import`, `publish`: other trackers' formats, hhbench's asv results and a
    static dashboard;
  * `cli`: the `hhbench history` commands.

Only `store` (and what uses it) imports SQLAlchemy: `pip install 'hhbench[history]'`.
"""
