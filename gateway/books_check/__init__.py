"""The books check: a month of shop orders matched against Exact Online, with findings an accountant can file.

Not to be confused with `jobs/reconcile.py` (`reconcile_orders`), the sweep that re-enqueues lost booking jobs.
"""
