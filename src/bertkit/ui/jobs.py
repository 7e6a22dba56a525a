"""The web app's job queue: each training job is one `bertkit train` process, run one at a time by a worker
process of its own, so jobs queue instead of fighting for the CPU, and neither outlives the other's death:
killing the UI leaves the worker and its job running; a UI started again finds them from the files.

    WORKSPACE/.bertkit-ui/jobs/ID.json    the job: its command, run directory, state and process id
    WORKSPACE/.bertkit-ui/jobs/ID.log     what the command printed (its log lines)
    WORKSPACE/.bertkit-ui/worker.pid      the worker, while it runs

A job's states: queued -> running -> done | failed | stopped. Stopping sends SIGTERM, which `bertkit train`
handles as Ctrl-C: the run directory is marked interrupted and can be resumed (a new job with --resume).
The run directory's own status.json stays the truth about the run; the job file is about the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bertkit.io import atomic_write_text, process_alive, split_lines

__all__ = ["JobQueue", "main"]

STATE_DIR = ".bertkit-ui"


class JobQueue:
    """The jobs of one workspace, as files (any process may read them; the worker alone starts commands)."""

    def __init__(self, workspace: str | Path) -> None:
        self.workspace = Path(workspace).resolve()
        self.folder = self.workspace / STATE_DIR / "jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.worker_pid_file = self.workspace / STATE_DIR / "worker.pid"

    # --- records ------------------------------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        if not job_id.replace("-", "").isalnum():
            raise KeyError(job_id)
        return self.folder / f"{job_id}.json"

    def get(self, job_id: str) -> dict[str, Any]:
        path = self._path(job_id)
        if not path.exists():
            raise KeyError(job_id)
        return json.loads(path.read_text(encoding="utf-8"))

    def _put(self, job: dict[str, Any]) -> None:
        atomic_write_text(self._path(job["id"]), json.dumps(job, indent=2, ensure_ascii=False))

    def all(self) -> list[dict[str, Any]]:
        jobs = []
        for path in self.folder.glob("*.json"):
            try:
                jobs.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # being replaced right now
        return sorted(jobs, key=lambda j: j["created"])

    def log(self, job_id: str, tail: int = 200) -> list[str]:
        path = self.folder / f"{self._path(job_id).stem}.log"
        if not path.exists():
            return []
        return split_lines(path.read_text(encoding="utf-8", errors="replace"))[-tail:]

    def for_run(self, run: Path, kind: str = "train") -> dict[str, Any] | None:
        """The newest job of a run directory (of one kind: its training, or its exports)."""
        run = str(Path(run).resolve())
        jobs = [j for j in self.all() if j["run"] == run and j["kind"] == kind]
        return jobs[-1] if jobs else None

    # --- changes ------------------------------------------------------------------------------------------
    def submit(self, args: list[str], run: Path, kind: str = "train", **extra: Any) -> dict[str, Any]:
        """Queue `bertkit ARGS` for run directory `run`, and make sure a worker runs the queue."""
        job = {**extra, "id": time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], "kind": kind, "args": args,
               "run": str(Path(run).resolve()), "state": "queued", "created": time.time(), "pid": None,
               "started": None, "ended": None, "returncode": None}
        self._put(job)
        self.ensure_worker()
        return job

    def stop(self, job_id: str) -> dict[str, Any]:
        """A queued job is dropped; a running one gets SIGTERM (the run is marked interrupted)."""
        job = self.get(job_id)
        if job["state"] == "queued":
            job.update(state="stopped", ended=time.time())
            self._put(job)
        elif job["state"] == "running" and process_alive(job["pid"]):
            os.kill(job["pid"], signal.SIGTERM)
        return job

    def worker_alive(self) -> bool:
        try:
            return process_alive(int(self.worker_pid_file.read_text()))
        except (OSError, ValueError):
            return False

    def ensure_worker(self) -> None:
        """Start a worker when jobs wait and none runs (a new UI, or one after the worker ended). A job left
        'running' by a worker that died is closed as failed (its run directory says how far it got)."""
        if self.worker_alive():
            return
        for job in self.all():
            if job["state"] == "running" and not process_alive(job["pid"]):
                job.update(state="failed", ended=time.time(), note="its worker stopped before it ended")
                self._put(job)
        if any(j["state"] == "queued" for j in self.all()):
            log = open(self.workspace / STATE_DIR / "worker.log", "ab")
            subprocess.Popen([sys.executable, "-m", "bertkit.ui.jobs", str(self.workspace)], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            deadline = time.time() + 10
            while not self.worker_alive() and time.time() < deadline:
                time.sleep(0.05)

    # --- the worker ---------------------------------------------------------------------------------------
    def work(self) -> None:
        """Run queued jobs oldest first, one at a time, until none is left. One worker at a time holds the
        workspace's lock; a second one started meanwhile waits for it, then finds the queue as it is."""
        import fcntl

        with open(self.workspace / STATE_DIR / "worker.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            while True:
                self.worker_pid_file.write_text(str(os.getpid()))
                while queued := [j for j in self.all() if j["state"] == "queued"]:
                    self._run(queued[0])
                self.worker_pid_file.unlink(missing_ok=True)
                # a job submitted while the pid file was still there found a worker: look once more
                if not any(j["state"] == "queued" for j in self.all()):
                    return

    def _run(self, job: dict[str, Any]) -> None:
        job = self.get(job["id"])
        if job["state"] != "queued":  # stopped while it waited
            return
        log_path = self.folder / f"{job['id']}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bertkit", *job["args"]], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=self.workspace)
            job.update(state="running", pid=proc.pid, started=time.time())
            self._put(job)
            code = proc.wait()
        job = self.get(job["id"])
        state = "done" if code == 0 else "stopped" if code in (130, 143) else "failed"
        job.update(state=state, returncode=code, ended=time.time())
        self._put(job)


def main(argv: list[str] | None = None) -> int:
    """`python -m bertkit.ui.jobs WORKSPACE`: the worker."""
    args = sys.argv[1:] if argv is None else argv
    JobQueue(args[0]).work()
    return 0


if __name__ == "__main__":
    sys.exit(main())
