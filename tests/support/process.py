"""Stopping the processes the tests start."""
from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM (the process's graceful stop), SIGKILL after `timeout` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
