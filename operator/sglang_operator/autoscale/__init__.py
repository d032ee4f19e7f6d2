"""The built-in autoscaler: scrape each leader's queue gauge, decide the number of groups (a pure
function with the HPA's shape), write the LeaderWorkerSet's replicas under a field manager of its own.
supervisor.py runs tick.py for every object; handoff.py is its side of LWS spec.replicas."""
