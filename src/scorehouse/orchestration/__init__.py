"""Orchestration: how flow steps run, skip work already done, report and alert.

- `results`: the JSON a submitted step writes with `--result-json` (the same dict in both modes)
- `ledger`: the `step_runs` Delta table (what each step committed, from which inputs)
- `publications`: the `publications` Delta table (each Redis generation and its sources)
- `steps`: every step (work, skip decision, lock) and `run_step`, the one way one runs
- `entry`: a step's command line (jobs/run_step.py and the named jobs call it)
- `runner`: submits a step through spark-submit (logs, timeout)
- `alerts`, `report`: the failure webhook and the per-run markdown artifact
"""
