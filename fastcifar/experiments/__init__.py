"""Experiments over runs: several seeds as one group, and the table of runs.

    seeds       --seeds: one run per seed in RUNDIR/seed-<k>/, statistics in summary.json
    launch      what `fastcifar train` runs: one run, a seed group, or its resumption
    statistics  mean, std, min, max, n and per-seed values, and their one-line form
    runs        the run folders under some directories: their settings, progress, state
    runs_table  those as a text table;  runs_plot  test accuracy per epoch as a PNG

Above the engine (it trains through engine.loop), below bench and cli. `runs`,
`runs_table` and `statistics` do not load torch: `fastcifar runs` reads files only.
"""
