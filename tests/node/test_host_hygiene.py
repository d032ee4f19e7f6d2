"""A node test bed that is killed with a container running leaves the host as it found it: no
process, mount, network link, iptables rule, cgroup or kernel parameter of its own remains."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.cluster.controlplane import REPO
from tests.cluster.hostsnapshot import HostSnapshot, processes
from tests.support.waiting import wait_for

# A bed with one running pod, in a process of its own that the test kills like a CI timeout would.
BED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from kubernetes import client
    from tests.cluster.node import NodeCluster
    bed = NodeCluster(Path(sys.argv[1]), kwok_gpu_nodes=1).start()
    api = bed.api_client()
    core = client.CoreV1Api(api)
    while True:
        try:
            core.read_namespaced_service_account("default", "default"); break
        except client.ApiException:
            time.sleep(0.2)
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "s", "image": bed.images["sglang-operator"], "imagePullPolicy": "Never",
                                 "command": ["python", "-c", "import time; time.sleep(3600)"]}]}})
    while core.read_namespaced_pod("sleeper", "default").status.phase != "Running":
        time.sleep(0.2)
    print("RUNNING", flush=True)
    time.sleep(3600)
""")


def bed_processes(workdir: str) -> dict[int, str]:
    """Every process of the bed names its work directory in its arguments (configs, sockets, data)."""
    return {pid: cmd for pid, cmd in processes().items() if workdir in cmd}


def test_killed_bed_leaves_nothing_behind(tmp_path):
    workdir = str(tmp_path / "bed")
    before = HostSnapshot.take()
    assert not bed_processes(workdir), "a node bed is already running"
    proc = subprocess.Popen([sys.executable, "-c", BED, workdir], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + 300
        while "RUNNING" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "RUNNING" in line, f"the bed did not start (exit {proc.poll()}); logs in {workdir}/logs"
        during = HostSnapshot.take()
        # the bed really changed the host, so "unchanged afterwards" means something
        assert before.differences(during), "the running bed changed nothing on the host?"
        assert any("sleep 3600" in c or "time.sleep(3600)" in c for c in processes().values())
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no teardown code of the bed runs
        proc.wait()
    t0 = time.monotonic()
    wait_for(lambda: not before.differences(HostSnapshot.take()) and not bed_processes(workdir), timeout=90,
             interval=0.5, what="the janitor to restore the host")
    print(f"host restored {time.monotonic() - t0:.1f}s after the kill")
    assert not any("time.sleep(3600)" in c for c in processes().values())
    janitor_log = (tmp_path / "bed" / "logs" / "janitor.log").read_text()
    assert "host restored" in janitor_log and "could not" not in janitor_log
