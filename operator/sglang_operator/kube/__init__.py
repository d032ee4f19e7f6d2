"""The Kubernetes client the controllers share: raw REST over the official client (client.py), its
errors (errors.py), conditions and timestamps (conditions.py), Events (events.py)."""
