"""`bertkit ui`: a real UI process on a loopback port over a workspace holding the tiny model, driven over
HTTP and in headless Chromium: upload, preview and column suggestions, a run started from the form and
watched to completion, try it, the report, export and download, a bad file's error in the form, the
workspace's confinement and API key, and jobs that outlive the UI. The confinement, API key and refusal tests run
the same app in a thread of the test process (the process's start-up is not what they test)."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from conftest import toy_sentiment, write_csv
from serve.test_server import _free_port, serve_in_thread

pytest.importorskip("fastapi")  # the serve extra


class UI:
    def __init__(self, workspace: Path, *flags: str) -> None:
        self.workspace, self.port = workspace, _free_port()
        self.log = open(workspace.parent / f"ui-{self.port}.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "bertkit", "ui", "--workspace", str(workspace), "--port",
                                      str(self.port), *flags], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.token: str | None = None
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/api/files", timeout=5)
                return
            except urllib.error.HTTPError:  # up: a 403 without the token, which the command printed
                found = re.search(rf"http://127\.0\.0\.1:{self.port}/\?token=([\w-]+)", self.logs())
                assert found, self.logs()
                self.token = found.group(1)
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.proc.poll() is None, self.logs()
                time.sleep(0.2)
        raise AssertionError("the UI did not start: " + self.logs())

    def open(self, driver, page: str) -> None:
        """Open `page` in a browser as a user does: through the printed address (which sets the cookie)."""
        driver.get(f"{self.url}{page}?token={self.token}")

    def logs(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def call(self, method: str, path: str, body=None, raw: bytes | None = None, headers=None):
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        kind = "application/octet-stream" if path.startswith("/api/upload") else "application/json"
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": kind, **auth, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                payload = resp.read()
                kind = resp.headers.get("content-type", "")
                return resp.status, json.loads(payload) if "json" in kind else payload
        except urllib.error.HTTPError as err:
            payload = err.read()
            try:
                return err.code, json.loads(payload)
            except ValueError:
                return err.code, payload

    def wait_run(self, name: str, until, timeout: float = 180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, state = self.call("GET", f"/api/run/{name}")
            if status == 200 and until(state):
                return state
            time.sleep(0.3)
        raise AssertionError(f"{name}: {state}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.log.close()


class ThreadUI(UI):
    """`bertkit ui` as its command builds it (`create_app` under uvicorn), in a thread of the test process: for
    the tests of what the UI answers, not of its process or its jobs."""

    def __init__(self, workspace: Path, **options) -> None:
        from bertkit.ui.app import create_app

        self.workspace, self.port = workspace, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options.setdefault("token", "launch-token")
        self.token = options["token"]

        def up() -> bool:
            try:
                urllib.request.urlopen(self.url + "/api/files", timeout=5)
            except urllib.error.HTTPError:
                pass  # up (a 403 without the token)
            return True

        self.kill = serve_in_thread(create_app(workspace, **options), self.port, up)


LR_BY_MODEL = "by model: 1e-4 small (the embedded MiniLM), 5e-5 base, 2e-5 large"
TINY = {"model": "models/tiny", "lr": "5e-3", "batch_size": "16", "method": "standard",
        "yaml": "train:\n  precision: fp32\n  eval_every: 10\n  seed: 3\n"}


def _csv(tmp_path: Path, n: int = 240, seed: int = 1) -> bytes:
    path = write_csv(tmp_path / f"reviews-{n}-{seed}.csv", ["review", "sentiment"], toy_sentiment(n, seed=seed))
    return path.read_bytes()


def _stop_jobs(ws: Path) -> None:
    for job in (ws / ".bertkit-ui" / "jobs").glob("*.json"):
        pid = json.loads(job.read_text()).get("pid")
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_upload_preview_start_watch_try_and_export_over_http(workspace, tmp_path):
    ui = UI(workspace)
    try:
        status, body = ui.call("PUT", "/api/upload?name=reviews.csv", raw=_csv(tmp_path))
        assert status == 200 and body["file"] == "uploads/reviews.csv"
        status, preview = ui.call("GET", "/api/preview?file=uploads/reviews.csv")
        assert preview["columns"] == ["review", "sentiment"] and len(preview["rows"]) == 8
        assert preview["count"] == 240 and preview["defaults"] == {"examples": 216, "dev_split": True, "batch_size": 8,
                                                                   "epochs": 5.0, "lr": LR_BY_MODEL}
        assert preview["suggested"] == {"task": "classification", "text_column": "review", "text_pair_column": None,
                                        "label_column": "sentiment"}
        form = {"name": "first", "file": "uploads/reviews.csv", "task": "classification", "text_column": "review",
                "label_column": "sentiment", "max_steps": "40", **TINY}
        status, started = ui.call("POST", "/api/runs", form)
        assert status == 200 and started["run"] == "first" and started["examples"] == 240
        state = ui.wait_run("first", lambda s: s["job"]["state"] not in ("queued", "running"))
        assert state["job"]["state"] == "done" and state["status"]["status"] == "completed"
        assert state["primary"] == "accuracy"
        assert [m["step"] for m in state["metrics"] if m["kind"] == "eval"] == [10, 20, 30, 40]
        assert any("run directory:" in line for line in state["log"]) and state["card"]
        # the UI's run directory is the CLI's: the same config keys, the saved config names the uploaded file
        config = (workspace / "runs" / "first" / "config.yaml").read_text()
        assert str(workspace / "uploads" / "reviews.csv") in config and "max_steps: 40" in config
        status, out = ui.call("POST", "/api/run/first/predict", {"inputs": ["a great and lovely film"]})
        assert status == 200 and out["predictions"][0]["label"] in ("positive", "negative")
        assert ui.call("GET", "/run/first/report")[0] == 200
        status, job = ui.call("POST", "/api/run/first/export", {"format": "hf"})
        state = ui.wait_run("first", lambda s: s["exports"] and s["exports"][0]["state"] in ("done", "failed"))
        assert state["exports"][0]["state"] == "done", ui.call("GET", "/api/run/first")[1]["exports"]
        status, data = ui.call("GET", state["exports"][0]["download"])
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        assert any(n.endswith("/model.safetensors") for n in names) and any(n.endswith("/config.json") for n in names)
        status, runs = ui.call("GET", "/api/runs")
        assert [r["name"] for r in runs["runs"]] == ["first"] and runs["runs"][0]["status"] == "completed"
        for page in ("/", "/new", "/run/first", "/static/ui.js", "/static/ui.css"):  # nothing from elsewhere
            status, body = ui.call("GET", page)
            assert status == 200 and b"http://" not in body and b"https://" not in body and b"//cdn" not in body
    finally:
        ui.kill()
        _stop_jobs(workspace)


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/passwd", "uploads/../../x.csv", ".bertkit-ui/jobs"])
def test_no_path_outside_the_workspace_is_read(workspace, tmp_path, path):
    (tmp_path / "outside.csv").write_text("text,label\nsecret,1\n")
    ui = ThreadUI(workspace)
    try:
        status, body = ui.call("GET", "/api/preview?file=" + urllib.request.quote(path))
        assert status == 422 and ("outside the workspace" in body["error"] or "not data" in body["error"])
        form = {"name": "x", "file": path, "task": "classification", **TINY}
        assert ui.call("POST", "/api/runs", form)[0] == 422
        assert ui.call("PUT", "/api/upload?name=" + urllib.request.quote("../evil.csv"), raw=b"a,b\n1,2\n")[0] == 200
        assert not (workspace / "evil.csv").exists() and (workspace / "uploads" / "evil.csv").exists()
        assert ui.call("PUT", "/api/upload?name=run.sh", raw=b"echo\n")[0] == 422
    finally:
        ui.kill()


def test_upload_limit(workspace, tmp_path):
    ui = ThreadUI(workspace, max_upload_mb=0.01)
    try:
        status, body = ui.call("PUT", "/api/upload?name=big.csv", raw=b"text,label\n" + b"x,1\n" * 5000)
        assert status == 413 and "upload limit" in body["error"]
        assert not list((workspace / "uploads").iterdir())  # nothing half-written left
    finally:
        ui.kill()


def test_bad_data_and_settings_are_refused_in_the_clis_words(workspace, tmp_path):
    ui = ThreadUI(workspace)
    try:
        ui.call("PUT", "/api/upload?name=reviews.csv", raw=_csv(tmp_path))
        ui.call("PUT", "/api/upload?name=ragged.csv", raw=b"review,sentiment\ngood film,positive\nbad,negative,extra\n")
        base = {"name": "r", "file": "uploads/reviews.csv", "task": "classification", "text_column": "review", **TINY}
        status, body = ui.call("POST", "/api/runs", {**base, "label_column": "stars"})
        assert status == 422 and "no column 'stars'" in body["error"] and "--label-column (data.label_column)" in body[
            "error"]
        status, body = ui.call("POST", "/api/runs", {**base, "label_column": "sentiment", "lr": "fast"})
        assert status == 422 and "train.lr" in body["error"]
        status, body = ui.call("POST", "/api/runs", {**base, "file": "uploads/ragged.csv", "label_column": "sentiment"})
        assert status == 422 and "ragged.csv:3" in body["error"]
        assert not (workspace / "runs" / "r").exists() and not ui.call("GET", "/api/runs")[1]["runs"]
    finally:
        ui.kill()


def test_the_form_offers_the_registered_tasks_with_their_options_and_regression_is_a_problem(
        workspace, tmp_path, monkeypatch):
    """The task list, each task's options and columns come from the registry: a task registered now appears
    with its own option; "regression" is the classification task's problem, suggested for scores, and the
    posted option starts a regression run."""
    import dataclasses

    from bertkit import config as config_module
    from bertkit.config import TaskConfig, option
    from bertkit.tasks import base
    from bertkit.tasks.classification import ClassificationTask

    @dataclasses.dataclass
    class EchoConfig(TaskConfig):
        echo_width: int = option(3, "how wide the echo is")

    monkeypatch.setattr(base, "TASKS", dict(base.TASKS))
    monkeypatch.setattr(config_module, "TASK_CONFIGS", dict(config_module.task_configs()))
    base.register_task("echo")(type("Echo", (ClassificationTask,), {"config_class": EchoConfig}))
    rows = [(t, "0.25" if s == "negative" else "0.8") for t, s in toy_sentiment(60, seed=4)]
    ui = ThreadUI(workspace)
    try:
        page = ui.call("GET", "/new")[1].decode()
        forms = json.loads(page.split('<script id=taskforms type="application/json">')[1].split("</script>")[0])
        assert [f["name"] for f in forms] == ["classification", *sorted(n for n in base.TASKS if n != "classification")]
        by_name = {f["name"]: f for f in forms}
        assert [o["name"] for o in by_name["echo"]["options"]] == ["echo_width"]
        problem = next(o for o in by_name["classification"]["options"] if o["key"] == "task.problem")
        assert "regression" in problem["choices"] and "regression" not in by_name
        assert {"text_column", "label_column"} <= {c["name"] for c in by_name["classification"]["columns"]}
        assert "tokens_column" in {c["name"] for c in by_name["ner"]["columns"]}
        ui.call("PUT", "/api/upload?name=scores.csv", raw=write_csv(tmp_path / "s.csv", ["review", "score"],
                                                                   rows).read_bytes())
        suggested = ui.call("GET", "/api/preview?file=uploads/scores.csv")[1]["suggested"]
        assert (suggested["task"], suggested["task.problem"]) == ("classification", "regression")
        form = {"name": "reg", "file": "uploads/scores.csv", "task": "classification", "task.problem": "regression",
                "text_column": "review", "label_column": "score", "max_steps": "5", **TINY}
        status, body = ui.call("POST", "/api/runs", form)
        assert status == 200, body
        job = json.loads(next((workspace / ".bertkit-ui" / "jobs").glob("*.json")).read_text())
        config = Path(next(a for a in job["args"] if a.endswith(".yaml"))).read_text()
        assert "name: classification" in config and "problem: regression" in config
    finally:
        ui.kill()
        _stop_jobs(workspace)


def test_a_job_outlives_the_ui_and_a_new_ui_stops_and_resumes_it(workspace, tmp_path):
    ui = UI(workspace)
    ui.call("PUT", "/api/upload?name=reviews.csv", raw=_csv(tmp_path, 600))
    form = {"name": "long", "file": "uploads/reviews.csv", "task": "classification", "text_column": "review",
            "label_column": "sentiment", "max_steps": "100000", **TINY, "batch_size": "8",
            "yaml": TINY["yaml"] + "  save_every: 20\n  eval_every: 20\n"}
    assert ui.call("POST", "/api/runs", form)[0] == 200
    ui.wait_run("long", lambda s: (s.get("status") or {}).get("step", 0) >= 25)
    ui.kill()  # the UI dies; its worker and the job are processes of their own
    job = json.loads(next((workspace / ".bertkit-ui" / "jobs").glob("*.json")).read_text())
    metrics = workspace / "runs" / "long" / "metrics.jsonl"
    lines = len(metrics.read_text().splitlines())
    deadline = time.time() + 30
    while len(metrics.read_text().splitlines()) == lines and time.time() < deadline:
        time.sleep(0.2)
    assert len(metrics.read_text().splitlines()) > lines  # still training with no UI
    ui = UI(workspace)
    try:
        state = ui.wait_run("long", lambda s: s["job"]["state"] == "running")
        assert state["job"]["pid"] == job["pid"]
        assert ui.call("POST", "/api/run/long/stop")[0] == 200
        state = ui.wait_run("long", lambda s: s["job"]["state"] == "stopped", timeout=60)
        assert state["status"]["status"] == "interrupted"
        stopped_at = state["status"]["step"]
        assert ui.call("POST", "/api/run/long/resume")[0] == 200
        state = ui.wait_run("long", lambda s: s["job"]["state"] == "running" and s["status"]["step"] > stopped_at)
        assert any("resuming" in line for line in state["log"]) or state["status"]["step"] > stopped_at
        assert ui.call("POST", "/api/run/long/resume")[0] == 409  # one job of a run at a time
    finally:
        ui.call("POST", "/api/run/long/stop")
        ui.kill()
        _stop_jobs(workspace)


def test_jobs_queue_one_at_a_time(workspace, tmp_path):
    ui = UI(workspace)
    try:
        ui.call("PUT", "/api/upload?name=reviews.csv", raw=_csv(tmp_path))
        for name in ("a", "b"):
            form = {"name": name, "file": "uploads/reviews.csv", "task": "classification", "text_column": "review",
                    "label_column": "sentiment", "max_steps": "30", **TINY}
            assert ui.call("POST", "/api/runs", form)[0] == 200
        status, runs = ui.call("GET", "/api/runs")
        states = {r["name"]: r["status"] for r in runs["runs"]}
        assert states["b"] == "queued"
        ui.wait_run("b", lambda s: s["job"]["state"] == "done")
        jobs = [json.loads(p.read_text()) for p in (workspace / ".bertkit-ui" / "jobs").glob("*.json")]
        a, b = sorted(jobs, key=lambda j: j["created"])
        assert a["ended"] <= b["started"]  # b started after a ended
        status, page = ui.call("GET", "/compare?run=a&run=b")
        assert status == 200 and b"runs/a" in page and b"runs/b" in page and b"<svg" in page
    finally:
        ui.kill()
        _stop_jobs(workspace)


def test_the_browser_path_from_upload_to_prediction_and_report(workspace, tmp_path):
    """Headless Chromium: upload a CSV, see its columns suggested, start a run on the tiny model, watch the
    curve grow and the run complete, type a sentence and see its label, open the report; then a bad file's
    error appears in the form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from evaluation.test_report import _chrome

    good = tmp_path / "reviews.csv"
    good.write_bytes(_csv(tmp_path))
    bad = tmp_path / "ragged.csv"
    bad.write_text("review,sentiment\ngood film,positive\nbad,negative,extra\n", encoding="utf-8")
    ui = UI(workspace)
    driver = _chrome()
    timings = {}
    try:
        start = time.time()
        ui.open(driver, "/new")
        wait = WebDriverWait(driver, 60)
        driver.find_element(By.ID, "upload").send_keys(str(good))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.preview tbody tr"))
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.preview tbody tr")) == 8
        assert Select(driver.find_element(By.ID, "text_column")).first_selected_option.text == "review"
        assert Select(driver.find_element(By.ID, "label_column")).first_selected_option.text == "sentiment"
        assert driver.find_element(By.ID, "name").get_attribute("value") == "reviews-classification"
        Select(driver.find_element(By.ID, "model")).select_by_visible_text("models/tiny")
        for field, value in (("max_steps", "300"), ("lr", "5e-3"), ("batch_size", "16")):
            driver.find_element(By.NAME, field).send_keys(value)
        driver.find_element(By.TAG_NAME, "summary").click()
        driver.find_element(By.ID, "yaml").send_keys("train:\n  method: standard\n  precision: fp32\n"
                                                    "  eval_every: 25\n")  # long enough to be seen growing
        timings["form"] = time.time() - start
        driver.find_element(By.ID, "start").click()
        wait.until(lambda d: d.current_url.endswith("/run/reviews-classification"))
        points = []

        def curve_grew(d):  # read in one script: the page redraws the curve at every poll
            n, status = d.execute_script("const p = document.querySelector('#metric path.curve');"
                                         "return [p ? +p.dataset.points : 0, document.getElementById('status')"
                                         ".textContent];")
            if n and (not points or n != points[-1]):
                points.append(n)
            return status == "completed"

        WebDriverWait(driver, 180, poll_frequency=0.2).until(curve_grew)
        timings["training, watched"] = time.time() - start - timings["form"]
        assert points[-1] == 12 and len(points) >= 2, points  # seen while it grew, evaluations at 25..300
        assert driver.execute_script("return +document.querySelector('#loss path.curve').dataset.points") >= 12
        wait.until(lambda d: "run directory:" in d.execute_script("return document.getElementById('log').textContent"))
        driver.find_element(By.ID, "text").send_keys("a great and lovely film")
        driver.find_element(By.CSS_SELECTOR, "#try button").click()
        wait.until(lambda d: d.find_elements(By.ID, "predicted"))
        assert driver.find_element(By.ID, "predicted").text in ("positive", "negative")
        assert len(driver.find_elements(By.CSS_SELECTOR, ".barrow")) == 2
        driver.find_element(By.ID, "text").clear()  # longer than the tiny model's 64 positions: read in windows
        driver.find_element(By.ID, "text").send_keys(" ".join(["the film was very quite and"] * 20) + " lovely")
        driver.find_element(By.CSS_SELECTOR, "#try button").click()
        wait.until(lambda d: d.find_elements(By.ID, "read"))
        assert re.fullmatch(r"read whole in \d+ windows", driver.find_element(By.ID, "read").text)
        driver.find_element(By.ID, "report").click()
        wait.until(lambda d: "Dev accuracy" in d.page_source)
        driver.get(ui.url + "/")
        assert "reviews-classification" in driver.find_element(By.ID, "runs").text
        assert "completed" in driver.find_element(By.ID, "runs").text

        driver.get(ui.url + "/new")
        driver.find_element(By.ID, "upload").send_keys(str(bad))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.preview tbody tr") or d.find_element(
            By.ID, "error").text)
        Select(driver.find_element(By.ID, "model")).select_by_visible_text("models/tiny")
        driver.find_element(By.ID, "start").click()
        wait.until(lambda d: d.find_element(By.ID, "error").text)
        error = driver.find_element(By.ID, "error").text
        assert "ragged.csv:3" in error, error
        assert driver.current_url.endswith("/new")
        timings["all"] = time.time() - start
        print("browser test timings (s):", {k: round(v, 1) for k, v in timings.items()}, "dev points seen:", points)
    finally:
        driver.quit()
        ui.kill()
        _stop_jobs(workspace)


def test_the_yaml_panel_cannot_name_files_outside_the_workspace(workspace, tmp_path):
    (tmp_path / "outside.csv").write_bytes(_csv(tmp_path))
    ui = UI(workspace)
    try:
        ui.call("PUT", "/api/upload?name=reviews.csv", raw=_csv(tmp_path))
        base = {"name": "y", "file": "uploads/reviews.csv", "task": "classification", "text_column": "review",
                "label_column": "sentiment", **TINY}
        for yaml_text, key in ((f"data:\n  dev: {tmp_path / 'outside.csv'}\n", "data.dev"),
                               (f"model:\n  init_from: {tmp_path}\n", "model.init_from"),
                               ("train:\n  distill_from: ../../\n", "train.distill_from"),
                               (f"model:\n  name: {tmp_path}\n", "model.name")):
            status, body = ui.call("POST", "/api/runs", {**base, "yaml": yaml_text, "model": ""})
            assert status == 422 and key in body["error"] and "outside the workspace" in body["error"], body
        status, body = ui.call("POST", "/api/runs", {**base, "yaml": "data:\n  dev: uploads/reviews.csv\n"})
        assert status == 200  # a relative path inside the workspace is fine
    finally:
        ui.kill()
        _stop_jobs(workspace)


def test_try_it_highlights_entities_in_chinese_text_and_a_qa_answer_in_its_context(workspace, tmp_path):
    """Runs made by the CLI in the workspace show up in the UI; their Try-it panels mark NER entities in
    (Chinese) text and the QA answer in its context."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from conftest import cli_train, write_jsonl
    from evaluation.test_report import _chrome
    from test_chinese import _conll, _sentences

    cli_train("ner", _conll(tmp_path / "n.txt", _sentences(200, 1)), _conll(tmp_path / "nd.txt", _sentences(40, 2)),
              workspace / "runs" / "ner", workspace / "models" / "tiny", "--max-steps", "80", "--lr", "5e-3")
    rows = [{"id": str(k), "question": "who ?", "context": f"the film was fun and {n} was there",
             "answers": {"text": [n], "answer_start": [21]}} for k, n in enumerate(["mary", "john", "anna"] * 10)]
    cli_train("qa", write_jsonl(tmp_path / "q.jsonl", rows), write_jsonl(tmp_path / "qd.jsonl", rows[:6]),
              workspace / "runs" / "qa", workspace / "models" / "tiny", "--max-steps", "10", "--max-length", "32")
    ui = UI(workspace)
    driver = _chrome()
    try:
        wait = WebDriverWait(driver, 60)
        ui.open(driver, "/run/ner")
        wait.until(lambda d: d.find_elements(By.ID, "text"))
        driver.find_element(By.ID, "text").send_keys("张三在北京见了李四。")
        driver.find_element(By.CSS_SELECTOR, "#try button").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#predicted mark"))
        marks = driver.execute_script("return [...document.querySelectorAll('#predicted mark')].map(m => "
                                      "[m.firstChild.textContent, m.querySelector('sub').textContent])")
        assert marks == [["张三", "PER"], ["北京", "LOC"], ["李四", "PER"]]
        driver.get(ui.url + "/run/qa")
        wait.until(lambda d: d.find_elements(By.ID, "context"))
        driver.find_element(By.ID, "question").send_keys("who ?")
        context = "the film was fun and mary was there"
        driver.find_element(By.ID, "context").send_keys(context)
        driver.find_element(By.CSS_SELECTOR, "#try button").click()
        wait.until(lambda d: d.find_elements(By.ID, "predicted"))
        answer = driver.find_element(By.ID, "predicted").text
        assert answer and answer in context
        assert driver.execute_script("return document.querySelector('.context mark').firstChild.textContent") == answer
    finally:
        driver.quit()
        ui.kill()


def test_a_request_body_that_is_not_a_json_object_is_refused_not_a_crash(workspace):
    ui = ThreadUI(workspace)
    try:
        for path in ("/api/runs", "/api/run/x/export", "/api/run/x/predict"):
            for raw in (b"not json", b"[1, 2]"):
                status, body = ui.call("POST", path, raw=raw)
                assert status == 422 and "JSON" in body["error"], (path, raw, body)
    finally:
        ui.kill()


def test_texts_with_unicode_line_separators_go_through_train_report_evaluate_predict_and_the_app(
        workspace, tmp_path):
    """U+0085, U+2028 and U+2029 inside a text are characters of that text, not line ends: the run's JSON-lines
    files (dev examples, metrics) are read back whole, so the report is written, evaluate and predict answer
    one row per input, and the web app shows the run's metrics."""
    from bertkit.cli import main
    from conftest import cli_train

    seps = ["\u0085", "\u2028", "\u2029"]
    rows = [(text.replace(" ", f" {seps[i % 3]}", 1), label) for i, (text, label) in enumerate(toy_sentiment(120, 5))]
    train = write_csv(tmp_path / "train.csv", ["text", "sentiment"], rows[:90])
    dev = write_csv(tmp_path / "dev.csv", ["text", "sentiment"], rows[90:])
    run = cli_train("classification", train, dev, workspace / "runs" / "seps", workspace / "models" / "tiny",
                    "--label-column", "sentiment", "--max-steps", "10", "--eval-every", "5")
    assert (run / "report.html").is_file()
    dev_rows = [json.loads(line) for line in (run / "dev_examples.jsonl").read_text(encoding="utf-8").split("\n")
                if line]
    assert len(dev_rows) == 30 and any("\u2028" in r["text"] for r in dev_rows)
    assert main(["evaluate", str(run), "--data", str(dev), "--json"]) == 0
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t, _ in rows[90:]),
                      encoding="utf-8")
    out = tmp_path / "predictions.jsonl"
    assert main(["predict", str(run), "--input", str(inputs), "--output", str(out)]) == 0
    assert len([line for line in out.read_text(encoding="utf-8").split("\n") if line]) == 30
    ui = ThreadUI(workspace)
    try:
        status, state = ui.call("GET", "/api/run/seps")
        assert status == 200 and any("eval" in json.dumps(m) for m in state["metrics"])
    finally:
        ui.kill()


def test_the_new_run_preview_says_what_the_data_check_finds(workspace, tmp_path):
    rows = toy_sentiment(60, seed=8)
    data = write_csv(tmp_path / "dupes.csv", ["review", "sentiment"], rows + rows[:4] + [(rows[5][0], "other")])
    ui = ThreadUI(workspace)
    try:
        ui.call("PUT", "/api/upload?name=dupes.csv", raw=data.read_bytes())
        status, preview = ui.call("GET", "/api/preview?file=uploads/dupes.csv")
        checks = {c["code"]: c for c in preview["checks"]}
        assert status == 200 and checks["duplicates"]["count"] >= 4 and checks["conflicting_labels"]["count"] >= 1
        assert "dupes.csv:" in checks["duplicates"]["where"][0]
    finally:
        ui.kill()
