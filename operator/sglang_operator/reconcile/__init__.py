"""The controller: one pass (reconciler.py) around a pure core (diff, plan, status, change_events),
the one place that writes children (apply.py), and the failure policy of every trigger (retry.py)."""
