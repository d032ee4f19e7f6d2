"""A tensor/pipeline-parallel group's processes: placement and the rank processes of a pod
(launcher.py), one rank's life (rank.py), the heartbeat that breaks a group whose rank is gone
(heartbeat.py) and a follower pod's /health (follower_http.py)."""
