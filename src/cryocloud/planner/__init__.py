"""Planner: which machine, how many, spot or not, predicted hours and dollars (issue 4).

Entry points for other packages:
- `plan.plan_job(spec, settings)` -> Plan (options, cheapest within deadline, local comparison)
- `budget.check_budget(settings, ledger, user, project, predicted_usd)` raises when a submit would exceed a budget
- `budget.over_budget(settings, ledger, job_id)` -> BudgetBreach | None, for the monitor
"""
