"""`bertkit ui` against the attacks a web page or another local user can make: cross-site requests, DNS
rebinding, requests without the launch's token, and paths that leave the workspace (a path-list separator,
'~', symlinks, planted upload files). Each attack is sent as it would arrive and must get 403 (or 422 for a
path), with nothing started, read or written. The app runs under uvicorn in a thread of the test process."""

import http.client
import json
import os

import pytest

from ui.test_ui import TINY, ThreadUI, _csv, _stop_jobs

pytest.importorskip("fastapi")  # the serve extra


def _send(ui: ThreadUI, method: str, path: str, body: bytes | None = None, **headers: str):
    """One request with exactly `headers` (a Host header included when given): (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name.replace("_", "-"), value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _form(name: str = "x") -> bytes:
    return json.dumps({"name": name, "file": "uploads/reviews.csv", "task": "classification",
                       "text_column": "review", "label_column": "sentiment", "max_steps": "5", **TINY}).encode()


@pytest.fixture
def reviews(workspace, tmp_path):
    (workspace / "uploads").mkdir(exist_ok=True)
    (workspace / "uploads" / "reviews.csv").write_bytes(_csv(tmp_path))
    return workspace


@pytest.mark.parametrize("token", ["launch-token", None], ids=["token", "no-token"])
def test_a_cross_site_request_changes_nothing(reviews, token):
    """What any web page can make a browser send (a form, or fetch in no-cors mode: text/plain, its own Origin,
    Sec-Fetch-Site cross-site) is refused with 403, with a token and with --no-token; the UI's own page's
    request (same-origin, JSON) goes through."""
    ui = ThreadUI(reviews, token=token)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        evil = {"Origin": "http://evil.example", "Content_Type": "text/plain"}
        for path in ("/api/runs", "/api/run/x/export", "/api/run/x/stop", "/api/run/x/resume"):
            status, _, body = _send(ui, "POST", path, _form(), **evil, **auth)
            assert status == 403 and b"evil.example" in body, (path, status, body)
            status, _, body = _send(ui, "POST", path, _form(), Sec_Fetch_Site="cross-site",
                                    Content_Type="application/json", **auth)
            assert status == 403 and b"cross-site" in body, (path, status, body)
            status, _, body = _send(ui, "POST", path, _form(), Sec_Fetch_Site="same-site",
                                    Origin=f"http://127.0.0.1:{ui.port}", Content_Type="application/json", **auth)
            assert status == 403, (path, status, body)  # another port of this machine is another site
        # a form's content types are refused even with no Origin to judge by (415)
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            status, _, body = _send(ui, "POST", "/api/runs", _form(), Content_Type=kind, **auth)
            assert status == 415 and b"application/json" in body, (kind, status, body)
        assert not (reviews / "runs" / "x").exists() and not list((reviews / ".bertkit-ui" / "jobs").glob("*.json"))
        status, _, body = _send(ui, "POST", "/api/runs", _form(), Origin=f"http://127.0.0.1:{ui.port}",
                                Sec_Fetch_Site="same-origin", Content_Type="application/json", **auth)
        assert status == 200 and json.loads(body)["run"] == "x", body
    finally:
        ui.kill()
        _stop_jobs(reviews)


def test_a_rebound_host_name_reads_nothing(reviews):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host: evil.example.
    Every route refuses it, the token notwithstanding; loopback names and IPs, and --allowed-host, pass."""
    ui = ThreadUI(reviews)
    auth = {"Authorization": f"Bearer {ui.token}"}
    try:
        (reviews / "runs" / "r").mkdir(parents=True)
        for path in ("/api/runs", "/api/preview?file=uploads/reviews.csv", "/api/run/r", "/download/abc.zip", "/",
                     "/new", "/api/files"):
            for host in (f"evil.example:{ui.port}", "evil.example", "127.0.0.1.evil.example", "localhost.evil.example"):
                status, _, body = _send(ui, "GET", path, Host=host, **auth)
                assert status == 403 and b"--allowed-host" in body, (path, host, status)
                assert b"review" not in body
        for host in (f"127.0.0.1:{ui.port}", f"localhost:{ui.port}", "[::1]", f"ui.localhost:{ui.port}"):
            assert _send(ui, "GET", "/api/files", Host=host, **auth)[0] == 200, host
    finally:
        ui.kill()
    ui = ThreadUI(reviews, allowed_hosts=("box.lan",))
    try:
        assert _send(ui, "GET", "/api/files", Host=f"box.lan:{ui.port}", Authorization=f"Bearer {ui.token}")[0] == 200
        assert _send(ui, "GET", "/api/files", Host="other.lan", Authorization=f"Bearer {ui.token}")[0] == 403
    finally:
        ui.kill()


def test_every_route_wants_the_launch_token_and_the_printed_address_sets_it_as_a_cookie(reviews):
    ui = ThreadUI(reviews, token="launch-token")
    try:
        for path in ("/", "/new", "/api/files", "/api/runs", "/api/preview?file=uploads/reviews.csv", "/run/r",
                     "/download/abc.zip", "/static/ui.js"):
            status, _, body = _send(ui, "GET", path)
            assert status == 403 and b"token" in body, (path, status)
            assert _send(ui, "GET", path, Authorization="Bearer wrong")[0] == 403
        assert _send(ui, "GET", "/?token=wrong")[0] == 403
        status, headers, _ = _send(ui, "GET", "/new?token=launch-token")
        assert status == 303 and headers["location"] == "/new"  # the token leaves the address bar
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict"), cookie
        name_value = cookie.split(";")[0]
        assert name_value.endswith("=launch-token") and name_value.startswith("bertkit_ui_")
        assert _send(ui, "GET", "/new", Cookie=name_value)[0] == 200
        for scheme in ("Bearer", "bearer", "BEARER", "token"):
            assert _send(ui, "GET", "/api/files", Authorization=f"{scheme} launch-token")[0] == 200, scheme
        assert _send(ui, "GET", "/api/files", X_Bertkit_Token="launch-token")[0] == 200
    finally:
        ui.kill()
    ui = ThreadUI(reviews, token=None)  # --no-token: open to reads, still closed to other sites' writes
    try:
        assert _send(ui, "GET", "/api/files")[0] == 200
    finally:
        ui.kill()


def test_the_command_refuses_a_token_and_no_token_together(tmp_path, capsys):
    from bertkit.cli import main

    assert main(["ui", "--workspace", str(tmp_path), "--no-token", "--token", "t"]) != 0
    assert "--token and --no-token" in capsys.readouterr().err


def test_paths_that_leave_the_workspace_are_refused_however_they_are_spelled(reviews, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret_column,other\nthe secret,1\n")
    (reviews / "uploads" / "docs.txt").write_text("a domain sentence\n" * 20)
    (reviews / "uploads" / "elsewhere.csv").symlink_to(outside)
    ui = ThreadUI(reviews)
    try:
        cases = [
            ({"task": "mlm", "file": f"uploads/docs.txt{os.pathsep}{outside}"}, "one path per field"),
            ({"task": "mlm", "file": "", "yaml": f"data:\n  train: uploads/docs.txt{os.pathsep}{outside}\n"},
             "data.train"),
            ({"yaml": "model:\n  name: ~/m\n", "model": ""}, "model.name"),
            ({"yaml": "model:\n  extend_vocab_list: ../words.txt\n"}, "model.extend_vocab_list"),
            ({"file": "uploads/elsewhere.csv"}, "it leads to"),
            ({"dev": "~/dev.csv"}, "'~'"),
        ]
        for extra, words in cases:
            status, body = ui.call("POST", "/api/runs", {**json.loads(_form()), **extra})
            assert status == 422 and words in body["error"], (extra, body)
            assert "the secret" not in body["error"] and "secret_column" not in body["error"]
        status, body = ui.call("GET", "/api/preview?file=uploads/elsewhere.csv")
        assert status == 422 and "--allow-path" in body["error"] and "secret" not in body["error"]
        assert "uploads/elsewhere.csv" not in ui.call("GET", "/api/files")[1]["files"]
        assert not list((reviews / "runs").iterdir())
    finally:
        ui.kill()


def test_an_upload_never_writes_through_a_planted_symlink(reviews, tmp_path, monkeypatch):
    victim = tmp_path / "victim.csv"
    victim.write_text("precious\n")
    uploads = reviews / "uploads"
    (uploads / "x.csv").symlink_to(victim)  # at the target name: replaced, not followed
    ui = ThreadUI(reviews)
    try:
        status, body = ui.call("PUT", "/api/upload?name=x.csv", raw=b"text,label\nok,1\n")
        assert status == 200, body
        assert victim.read_text() == "precious\n"
        assert not (uploads / "x.csv").is_symlink() and (uploads / "x.csv").read_text() == "text,label\nok,1\n"
        # at the temp file's name (made predictable here): O_EXCL|O_NOFOLLOW refuses to open it
        import secrets

        names = iter(["planted", "fresh"])
        monkeypatch.setattr(secrets, "token_hex", lambda n: next(names))
        (uploads / ".y.csv.planted.part").symlink_to(victim)
        status, body = ui.call("PUT", "/api/upload?name=y.csv", raw=b"text,label\nok,1\n")
        assert status == 200, body  # another temp name was taken
        assert victim.read_text() == "precious\n" and (uploads / "y.csv").read_text() == "text,label\nok,1\n"
        assert (uploads / ".y.csv.planted.part").is_symlink()  # left as found
    finally:
        ui.kill()
    uploads_elsewhere = tmp_path / "elsewhere"
    uploads_elsewhere.mkdir()
    for p in uploads.iterdir():
        p.unlink()
    uploads.rmdir()
    uploads.symlink_to(uploads_elsewhere)  # the uploads folder itself leads outside
    ui = ThreadUI(reviews)
    try:
        status, body = ui.call("PUT", "/api/upload?name=z.csv", raw=b"text,label\nok,1\n")
        assert status == 422 and "uploads folder" in body["error"]
        assert not list(uploads_elsewhere.iterdir())
    finally:
        ui.kill()


def test_symlinked_data_and_models_inside_or_allowed_work_on_every_page(reviews, tmp_path, tiny_model_dir):
    """A data file and a model folder symlinked into the workspace (from inside it, or from a folder given
    with --allow-path) are listed, previewed and trained on; /new and /api/files answer (they gave 500)."""
    (reviews / "data").mkdir()
    (reviews / "data" / "real.csv").write_bytes(_csv(tmp_path))
    (reviews / "uploads" / "linked.csv").symlink_to(reviews / "data" / "real.csv")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "corpus.csv").write_bytes(_csv(tmp_path, seed=2))
    (reviews / "uploads" / "mine.csv").symlink_to(mine / "corpus.csv")
    (reviews / "models" / "linked").symlink_to(tiny_model_dir, target_is_directory=True)
    ui = ThreadUI(reviews, allowed_paths=(str(mine), str(tiny_model_dir)))
    try:
        for page in ("/", "/new"):
            status, body = ui.call("GET", page)
            assert status == 200 and b"uploads/linked.csv" in body if page == "/new" else status == 200
        status, files = ui.call("GET", "/api/files")
        assert status == 200
        assert {"uploads/linked.csv", "uploads/mine.csv", "data/real.csv"} <= set(files["files"])
        assert "models/linked" in files["models"]
        for name in ("uploads/linked.csv", "uploads/mine.csv"):
            status, preview = ui.call("GET", "/api/preview?file=" + name)
            assert status == 200 and preview["columns"] == ["review", "sentiment"]
        form = {**json.loads(_form("linked")), "file": "uploads/mine.csv", "model": "models/linked"}
        status, body = ui.call("POST", "/api/runs", form)
        assert status == 200, body
    finally:
        ui.kill()
        _stop_jobs(reviews)
    ui = ThreadUI(reviews)  # without --allow-path the outside ones are not offered, and refused when named
    try:
        status, files = ui.call("GET", "/api/files")
        assert status == 200 and "uploads/mine.csv" not in files["files"] and "uploads/linked.csv" in files["files"]
        assert "models/linked" not in files["models"]
        assert ui.call("GET", "/new")[0] == 200
    finally:
        ui.kill()
