"""Orchestration: how flow steps run their jobs, skip work already done, report and alert.

- `results`: the JSON a job writes with `--result-json` (the same dict in both run modes)
- `ledger`: the `step_runs` Delta table (what each step committed, from which inputs)
- `publications`: the `publications` Delta table (each Redis generation and its sources)
- `steps`: what the jobs in jobs/ call: one library call plus the ledger around it
- `runner`: runs a job in this process or through spark-submit (logs, timeout)
- `alerts`, `report`: the failure webhook and the per-run markdown artifact
"""
