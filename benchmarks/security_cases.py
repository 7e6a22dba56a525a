"""The attacks and silent-result cases of the security review, re-run against real `bertkit ui` and
`bertkit serve` processes and the command line; prints each case and the answer it gets now.

    python benchmarks/security_cases.py [--work DIR] [--connections 1000]

It trains one short run on the embedded MiniLM (40 steps on the bundled SST-2 dev sentences) to have something to
serve, export and download. Nothing here reaches the network: every request goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT / "data" / "sst2" / "dev.csv"
BERTKIT = [sys.executable, "-m", "bertkit"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(port: int, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name.replace("_", "-"), value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def show(case: str, answer: str) -> None:
    print(f"- {case}\n    -> {answer}")


def short(body: bytes, n: int = 150) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= n else text[:n] + "..."


def cli(*args: str) -> tuple[int, str]:
    done = subprocess.run([*BERTKIT, *args], capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stderr.strip().splitlines() if "error" in line or "warning" in line.lower()]
    return done.returncode, (lines[-1] if lines else done.stderr.strip()[-300:])


class Process:
    def __init__(self, args: list[str], ready_path: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen([*BERTKIT, *args, "--port", str(self.port)], stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                send(self.port, "GET", ready_path)
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"did not start: {log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def ui_cases(work: Path, run: Path) -> None:
    ws = work / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / "uploads").mkdir(parents=True)
    (ws / "models").mkdir()
    shutil.copytree(run, ws / "runs" / "r", symlinks=True)
    rows = SST2.read_text(encoding="utf-8")
    (ws / "uploads" / "reviews.csv").write_text(rows, encoding="utf-8")
    (ws / "uploads" / "docs.txt").write_text("a sentence of domain text\n" * 20, encoding="utf-8")
    outside = work / "outside.csv"
    outside.write_text("secret_column_name,other\nthe secret,1\n", encoding="utf-8")
    victim = work / "victim.csv"
    victim.write_text("precious\n", encoding="utf-8")
    data_dir = work / "mydata"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "linked.csv").write_text(rows, encoding="utf-8")
    (ws / "uploads" / "linked.csv").symlink_to(data_dir / "linked.csv")
    (ws / "models" / "minilm").symlink_to(run / "model", target_is_directory=True)

    print("\n## bertkit ui")
    ui = Process(["ui", "--workspace", str(ws), "--allow-path", str(data_dir), "--allow-path", str(run)], "/",
                 work / "ui.log")
    try:
        time.sleep(0.5)
        token = re.search(r"\?token=([\w-]+)", ui.log.read_text()).group(1)
        print(f"(started: the log prints http://127.0.0.1:{ui.port}/?token=<{len(token)} characters>)")
        auth = {"Authorization": f"Bearer {token}"}
        form = json.dumps({"name": "evil", "file": "uploads/reviews.csv", "task": "classification",
                           "text_column": "sentence", "label_column": "label", "max_steps": "5"}).encode()
        for path in ("/api/runs", "/api/run/r/export", "/api/run/r/stop"):
            status, _, body = send(ui.port, "POST", path, form, Origin="http://evil.example", Content_Type="text/plain")
            show(f"CSRF: POST {path}, Origin http://evil.example, text/plain, no token", f"{status} {short(body)}")
        status, _, body = send(ui.port, "POST", "/api/runs", form, Origin="http://evil.example",
                               Content_Type="text/plain", **auth)
        show("CSRF with the token (as if the cookie were sent)", f"{status} {short(body)}")
        status, _, body = send(ui.port, "POST", "/api/runs", form, Sec_Fetch_Site="cross-site",
                               Content_Type="application/json", **auth)
        show("CSRF: Sec-Fetch-Site cross-site, application/json", f"{status} {short(body)}")
        status, _, body = send(ui.port, "POST", "/api/runs", form, Content_Type="text/plain", **auth)
        show("POST /api/runs as text/plain (no Origin)", f"{status} {short(body)}")
        for path in ("/api/runs", "/api/preview?file=uploads/reviews.csv", "/api/run/r", "/download/abc.zip"):
            status, _, body = send(ui.port, "GET", path, Host=f"evil.example:{ui.port}", **auth)
            show(f"DNS rebinding: GET {path}, Host evil.example:{ui.port}", f"{status} {short(body, 110)}")
        status, _, body = send(ui.port, "GET", "/api/files")
        show("GET /api/files without the token", f"{status} {short(body)}")
        status, headers, _ = send(ui.port, "GET", f"/new?token={token}")
        cookie = headers.get("set-cookie", "")
        show("GET /new?token=TOKEN (the printed address)",
             f"{status} Location: {headers.get('location')}; Set-Cookie: {cookie.split('=')[0]}=...; "
             + "; ".join(p.strip() for p in cookie.split(";")[1:]))

        def start(extra: dict) -> str:
            body = json.dumps({"name": "x", "file": "uploads/reviews.csv", "task": "classification",
                               "text_column": "sentence", "label_column": "label", "max_steps": "5", **extra})
            status, _, answer = send(ui.port, "POST", "/api/runs", body.encode(), Content_Type="application/json",
                                     **auth)
            return f"{status} {short(answer, 260)}"

        show(f"escape (a): task mlm, file uploads/docs.txt{os.pathsep}{outside}",
             start({"task": "mlm", "file": f"uploads/docs.txt{os.pathsep}{outside}"}))
        show(f"escape (a) in the YAML panel: data.train uploads/docs.txt{os.pathsep}{outside}",
             start({"task": "mlm", "file": "", "yaml": f"data:\n  train: uploads/docs.txt{os.pathsep}{outside}\n"}))
        show('escape (b): YAML model: name: "~/m"', start({"yaml": 'model:\n  name: "~/m"\n'}))
        (ws / "uploads" / "x.csv").symlink_to(victim)
        status, _, body = send(ui.port, "PUT", "/api/upload?name=x.csv", b"text,label\nok,1\n",
                               Content_Type="application/octet-stream", **auth)
        show("escape (c): uploads/x.csv planted as a symlink to a file outside, then uploaded",
             f"{status} {short(body)}; outside file still {victim.read_text()!r}; uploads/x.csv is a "
             f"{'symlink' if (ws / 'uploads' / 'x.csv').is_symlink() else 'plain file'} now")
        for page in ("/new", "/api/files"):
            status, _, body = send(ui.port, "GET", page, **auth)
            found = [n for n in ("uploads/linked.csv", "models/minilm") if n.encode() in body]
            show(f"symlinked data file and model folder (allowed with --allow-path): GET {page}",
                 f"{status}, lists {', '.join(found)}")
        show('the form\'s task "regression" on uploads/reviews.csv (labels 0/1)',
             start({"name": "reg", "task": "regression"}))
    finally:
        ui.stop()
        for job in (ws / ".bertkit-ui" / "jobs").glob("*.json"):
            pid = json.loads(job.read_text()).get("pid")
            if pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass


def serve_cases(work: Path, run: Path, connections: int) -> None:
    print("\n## bertkit serve")
    server = Process(["serve", str(run)], "/health", work / "serve.log")
    try:
        while json.loads(send(server.port, "GET", "/health")[2])["model_loaded"] is not True:
            time.sleep(0.3)
        deep = b'{"inputs":[{"text":"good","x":' + b"[" * 600 + b"]" * 600 + b"}]}"
        status, _, body = send(server.port, "POST", "/v1/predict", deep, Content_Type="application/json")
        show(f"600-deep nesting in a dict input ({len(deep)} bytes)", f"{status} {short(body)}; traceback lines in "
             f"the log: {server.log.read_text().count('Traceback')}")
        status, headers, body = send(server.port, "GET", "/v1/predict")
        show("GET /v1/predict", f"{status} Allow: {headers.get('allow')} {short(body)}")
        status, _, body = send(server.port, "POST", "/v1/predict", b'{"inputs":[{}]}', Content_Type="application/json")
        schema = json.loads(send(server.port, "GET", "/openapi.json")[2])
        item = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        show('{"inputs":[{}]}', f"{status} {short(body)}; the published item schema now requires 'text': "
             f"{item['properties']['inputs']['items']['anyOf'][1]['required']}")
        responses = schema["paths"]["/v1/predict"]["post"]["responses"]
        show("statuses documented for POST /v1/predict", ", ".join(sorted(responses)))
        info = json.loads(send(server.port, "GET", "/v1/model")[2])
        show("/v1/model", f"model: {info['model']!r}; the run's absolute path appears: {str(run) in json.dumps(info)}")
        start = time.monotonic()
        socks = []
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        closed, got_408 = 0, 0
        for s in socks:
            data = b""
            try:
                while chunk := s.recv(4096):
                    data += chunk
            except (TimeoutError, ConnectionResetError):
                pass
            closed += 1
            got_408 += data.startswith(b"HTTP/1.1 408")
            s.close()
        show(f"{connections} connections sending partial headers (default --header-timeout 10)",
             f"{got_408} answered 408 and all {closed} closed after {time.monotonic() - start:.1f} s")
        status, _, _ = send(server.port, "POST", "/v1/predict", b'{"inputs":["still serving"]}',
                            Content_Type="application/json")
        show("a normal request afterwards", str(status))
    finally:
        server.stop()
    keyed = Process(["serve", str(run), "--api-key", "s3cret"], "/health", work / "serve-key.log")
    try:
        time.sleep(2)
        while json.loads(send(keyed.port, "GET", "/health")[2])["model_loaded"] is not True:
            time.sleep(0.3)
        status, _, _ = send(keyed.port, "POST", "/v1/predict", b'{"inputs":["good"]}', Content_Type="application/json",
                            Authorization="bearer s3cret")
        show("Authorization: bearer KEY (lower case)", str(status))
    finally:
        keyed.stop()


def silent_cases(work: Path, run: Path) -> None:
    print("\n## silent results")
    d = work / "files"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    with open(SST2, encoding="utf-8", newline="") as fh:
        sentences = [row["sentence"].replace(",", "") for _, row in zip(range(40), csv.DictReader(fh))]
    train = ["--model", "embedded", "--max-steps", "1", "--precision", "fp32", "--text-column", "text"]
    (d / "dup.csv").write_text("text,label,text\n" + "".join(f"{s},{'positive' if i % 2 else 'negative'},other\n"
                                                           for i, s in enumerate(sentences)))
    show("train on text,label,text", str(cli("train", "--train", str(d / "dup.csv"), "--out", str(d / "r1"), *train)))
    (d / "frac.csv").write_text("text,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(sentences[:39]))
                                + "an odd one,0.5\n")
    show("one 0.5 among 39 labels of 0/1", str(cli("train", "--train", str(d / "frac.csv"), "--out", str(d / "r2"),
                                                   *train)))
    (d / "u16.csv").write_bytes(("text,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(sentences)))
                                .encode("utf-16"))
    show("a UTF-16 file", str(cli("train", "--train", str(d / "u16.csv"), "--out", str(d / "r3"), *train)))
    (d / "nb.conll").write_text("John B-PER\nlives O\n\n10\u00a0000 O\npeople O\n", encoding="utf-8")
    show("a CoNLL token holding U+00A0", str(cli("train", "--task", "ner", "--train", str(d / "nb.conll"),
                                                 "--out", str(d / "r4"), *train[:-2])))
    (d / "iob.conll").write_text("the O\nman I-PER\nleft O\n\n" * 30, encoding="utf-8")
    log = subprocess.run([*BERTKIT, "train", "--task", "ner", "--train", str(d / "iob.conll"), "--out",
                          str(d / "r5"), "--tag-scheme", "iob2", *train[:-2]], capture_output=True, text=True,
                         cwd=ROOT).stderr
    show("IOB2 repair of 30 sentences opening with I-PER", next((line for line in log.splitlines()
                                                               if "were made B-" in line), "no warning"))
    inner = run / "model" / "inner"
    show("bertkit export RUN --out RUN/model/inner", str(cli("export", str(run), "--out", str(inner))))
    (d / "raw.jsonl").write_text('{"text": "john smith visited paris"}\n', encoding="utf-8")
    ner = d / "r5"
    if ner.exists():
        show("bertkit evaluate NER_RUN --data raw.jsonl (no entities field)",
             str(cli("evaluate", str(ner), "--data", str(d / "raw.jsonl"))))
    (d / "in.csv").write_text("text\na fine film\n", encoding="utf-8")
    start = time.monotonic()
    code, message = cli("predict", str(run), "--input", str(d / "in.csv"), "--output", "/proc/preds.jsonl")
    show("predict --output on a read-only place", f"{(code, message)} after {time.monotonic() - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None, help="a folder for the run and the workspace (default: a temp one)")
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bertkit-security-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    run = work / "run"
    if not (run / "model").exists():
        code, message = cli("train", "--train", str(SST2), "--out", str(run),
                            "--model", "embedded", "--text-column", "sentence", "--label-column", "label",
                            "--max-steps", "40", "--precision", "fp32")
        assert code == 0, message
    ui_cases(work, run)
    serve_cases(work, run, args.connections)
    silent_cases(work, run)


if __name__ == "__main__":
    main()
