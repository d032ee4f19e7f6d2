"""The controller: kopf handlers (handlers.py) around a pure core (diff, status, events) and the
one place that writes to the API (apply.py, via kube.py)."""
