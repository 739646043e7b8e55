"""`v2l serve`: the JSON API through HTTP, bad uploads as one-sentence 4xx errors, bounded load, a kill and restart,
and the page in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def _png(size=(48, 40), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    for x in range(0, size[0], 4):
        img.putpixel((x, x % size[1]), (0, 0, 255))
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def service(tiny_tokenizer_dir, tiny_vl, long_lm, data_root):
    from v2l.serve import Service
    from v2l.tokenizer import ImageTokenizer

    tok = ImageTokenizer.from_pretrained(tiny_tokenizer_dir, vl=tiny_vl, progress=False)
    # the shipped LoRA adapter is SmolLM2's: the restore tab reads the tiny LLM as its "tuned" one here
    return Service(data_root=str(data_root), models={"tokenizer": tok, "lm": long_lm, "tuned_lm": long_lm})


@pytest.fixture(scope="module")
def client(service):
    from fastapi.testclient import TestClient

    from v2l.serve import create_app

    return TestClient(create_app(service, max_waiting=4, max_upload_mb=0.5))


def _post(client, op, image=None, data=None, files=None):
    files = list(files or [])
    if image is not None:
        files.insert(0, ("image", ("x.png", image, "image/png")))
    return client.post(f"/api/v1/{op}", data=data or {}, files=files)


def test_health_page_and_openapi(client):
    r = client.get("/api/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert "<title>v2l" in client.get("/").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        f"/api/v1/{op}" for op in ("tokenize", "words", "reconstruct", "classify", "caption", "vqa", "denoise")
    } <= set(paths)


def test_every_operation_answers_json(client, service):
    img = _png()
    w = _post(client, "words", img, {"top": "3"}).json()
    assert len(w["words"]) == 3 and all({"word", "similarity"} <= set(x) for x in w["words"])
    t = _post(client, "tokenize", img).json()
    h = service.tok().config.latent_size
    assert len(t["local_ids"]) == h and len(t["local_tokens"][0]) == h and t["global_words"]
    rec = _post(client, "reconstruct", img).json()
    assert rec["reconstruction"].startswith("data:image/png;base64,") and rec["psnr"] > 0
    sup = [
        ("class:red", ("r.png", _png(color=(250, 0, 0)), "image/png")),
        ("class:blue", ("b.png", _png(color=(0, 0, 250)), "image/png")),
    ]
    c = _post(client, "classify", img, {"rule": "rank"}, sup).json()
    assert c["answer"] in ("red", "blue") and set(c["scores"]) == {"red", "blue"}
    assert {"rank", "constrained", "paper"} <= set(c["by_rule"]) and c["by_rule"]["rank"] == c["answer"]
    e = _post(client, "classify", img, {"episode": "heldout"}).json()
    assert len(e["scores"]) == 5 and e["answer"] in e["scores"]
    rs = _post(client, "restore", img, {"mask": "0.3"}).json()
    assert rs["ratio"] == 0.3 and all(rs[k].startswith("data:image/png") for k in ("masked", "restored", "original"))
    cap = _post(client, "caption", img).json()
    assert isinstance(cap["caption"], str) and "prompt" in cap and len(cap["prompt"]) > 100
    v = _post(client, "vqa", img, {"question": "What colour is it?"}).json()
    assert "answer" in v and "What colour is it" in v["prompt"]
    d = _post(client, "denoise", img, {"task": "inpaint"}).json()
    assert all(d[k].startswith("data:image/png") for k in ("original", "corrupted", "restored"))


def _bad_uploads() -> list:
    buf = io.BytesIO()
    Image.new("RGB", (1, 3000), (10, 10, 10)).save(buf, format="PNG")
    thin = buf.getvalue()
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(jpeg, format="JPEG")
    return [
        ("not-an-image", "words", b"just some text, not an image", {}, [], 400, "x.png"),
        ("corrupt", "words", jpeg.getvalue()[:200], {}, [], 400, "x.png"),
        ("empty", "words", b"", {}, [], 400, "empty"),
        ("thin-1x3000", "tokenize", thin, {}, [], 400, "aspect ratio"),
        ("huge-upload", "words", b"\x89PNG" + b"0" * 600_000, {}, [], 413, "upload limit"),
        (
            "empty-class",
            "classify",
            _png(),
            {"classes": "cat,dog"},
            [("class:cat", ("c.png", _png(), "image/png"))],
            400,
            "'dog' has no example",
        ),
        ("one-class", "classify", _png(), {}, [("class:cat", ("c.png", _png(), "image/png"))], 400, "two classes"),
        ("question-100kB", "vqa", _png(), {"question": "why " * 25_000}, [], 400, "1,000"),
        ("question-missing", "vqa", _png(), {}, [], 400, "question is missing"),
        ("task-unknown", "denoise", _png(), {"task": "paint"}, [], 400, "paint"),
        ("mask-2", "restore", _png(), {"mask": "2"}, [], 400, "mask"),
        ("mask-text", "restore", _png(), {"mask": "half"}, [], 400, "mask"),
        ("top-not-a-number", "words", _png(), {"top": "many"}, [], 400, "top"),
    ]


@pytest.mark.parametrize("case", _bad_uploads(), ids=lambda c: c[0])
def test_bad_uploads_are_one_sentence_4xx_and_the_server_lives(client, case):
    _, op, data, form, files, status, text = case
    r = _post(client, op, data, form, files)
    assert r.status_code == status, r.text
    msg = r.json()["error"]
    assert text in msg and "\n" not in msg and "Traceback" not in msg
    assert client.get("/api/v1/health").status_code == 200


def test_a_missing_image_field_is_a_400(client):
    r = client.post("/api/v1/words", data={"top": "3"})
    assert r.status_code == 400 and "multipart field `image`" in r.json()["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """The app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_24_concurrent_requests_are_served_or_told_busy_and_memory_stays_bounded(service):
    import httpx

    from v2l.serve import create_app

    img = _png()
    with _Server(create_app(service, max_waiting=4)) as srv:
        httpx.post(f"{srv.url}/api/v1/words", files={"image": ("x.png", img)}, timeout=60)  # warm
        before = _rss_mb()

        def one(i):
            op = ("words", "tokenize", "reconstruct")[i % 3]
            r = httpx.post(f"{srv.url}/api/v1/{op}", files={"image": ("x.png", img)}, timeout=120)
            return r.status_code, r.json()

        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(one, range(24)))
        codes = [c for c, _ in results]
        assert set(codes) <= {200, 503} and codes.count(200) >= 4
        assert all("busy" in body["error"] for c, body in results if c == 503)
        assert _rss_mb() - before < 500
        assert httpx.get(f"{srv.url}/api/v1/health", timeout=10).json()["status"] == "ok"
        assert httpx.post(f"{srv.url}/api/v1/words", files={"image": ("x.png", img)}, timeout=60).status_code == 200


def _serve_cmd(port, tiny_tokenizer_dir, tiny_llama_dir):
    return [
        sys.executable,
        "-m",
        "v2l",
        "serve",
        "--port",
        str(port),
        "-t",
        str(tiny_tokenizer_dir),
        "--llm",
        str(tiny_llama_dir),
    ]


def _wait_health(url, proc, seconds=90):
    import httpx

    t0 = time.time()
    while time.time() - t0 < seconds:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stderr.read().decode()[-500:]}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("the server did not answer")


def test_a_server_killed_mid_request_restarts_clean(tiny_tokenizer_dir, tiny_llama_dir, tmp_path):
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "V2L_CACHE": os.environ["V2L_CACHE"]}
    proc = subprocess.Popen(
        _serve_cmd(port, tiny_tokenizer_dir, tiny_llama_dir), stderr=subprocess.PIPE, env=env, cwd=tmp_path
    )
    try:
        _wait_health(url, proc)
        t = threading.Thread(
            target=lambda: _quiet(
                lambda: httpx.post(f"{url}/api/v1/reconstruct", files={"image": ("x.png", _png())}, timeout=30)
            )
        )
        t.start()
        time.sleep(0.3)
        proc.kill()
        proc.wait(10)
        t.join(30)
    finally:
        proc.kill()
    proc = subprocess.Popen(
        _serve_cmd(port, tiny_tokenizer_dir, tiny_llama_dir), stderr=subprocess.PIPE, env=env, cwd=tmp_path
    )
    try:
        _wait_health(url, proc)
        r = httpx.post(f"{url}/api/v1/words", files={"image": ("x.png", _png())}, timeout=60)
        assert r.status_code == 200 and r.json()["words"]
        assert not any(p.name.startswith("v2l-serve-") for p in tmp_path.iterdir())
    finally:
        proc.kill()


def _quiet(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - the request dies with the server, as it should
        pass


def test_binding_beyond_loopback_needs_a_flag():
    from typer.testing import CliRunner

    from v2l.cli import app

    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert r.exit_code != 0 and "--allow-remote" in str(r.output) + str(r.exception)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_page_in_a_real_browser(service, tmp_path):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium: .ci/run installs it (apt-get install chromium).")
        pytest.skip("no chromium: run `apt-get install chromium` (as root) to run the browser test")
    from playwright.sync_api import sync_playwright

    from v2l.serve import create_app

    photo, corrupt = tmp_path / "photo.png", tmp_path / "broken.jpg"
    photo.write_bytes(_png((96, 80)))
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    shots = Path(os.environ.get("V2L_SCREENSHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with _Server(create_app(service)) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(srv.url + "/")
        page.set_input_files("#image", str(photo))
        page.click("button[data-op=words]")
        page.wait_for_selector("#o-words table", timeout=60_000)
        assert page.locator("#o-words tr").count() == 10
        page.screenshot(path=str(shots / "words.png"), full_page=True)
        page.click("button[data-tab=tokenize]")
        page.click("button[data-op=tokenize]")
        page.wait_for_selector("#tokenmap", timeout=60_000)
        h = service.tok().config.latent_size
        assert page.locator("#tokenmap div").count() == h * h
        assert page.locator("#tokenmap div").first.get_attribute("title").startswith("id ")
        page.screenshot(path=str(shots / "token-map.png"), full_page=True)
        page.set_input_files("#image", str(corrupt))
        page.click("button[data-op=tokenize]")
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=60_000)
        assert "broken.jpg" in page.text_content("#error") or "image" in page.text_content("#error").lower()
        page.screenshot(path=str(shots / "error.png"), full_page=True)
        browser.close()
    assert (shots / "token-map.png").stat().st_size > 5000


def test_the_bad_input_corpus_images_get_the_clis_sentence_through_the_api(client, tmp_path):
    """Issue 47's corpus against the web API: every malformed image of `tests/corpus.py` is refused with the very
    sentence the CLI gives (a 4xx), every readable one is served (200)."""
    from corpus import make_images
    from v2l.data.images import load_image
    from v2l.errors import V2LError

    files = [p for p in make_images(tmp_path).values() if p.is_file()]
    assert len(files) >= 20
    for path in files:
        data = path.read_bytes()
        r = client.post("/api/v1/tokenize", files={"image": (path.name, data)})
        try:
            load_image(data, name=path.name)
            expected = None
        except V2LError as e:
            expected = str(e)
        if expected is None and data:
            assert r.status_code == 200, (path.name, r.text[:200])
        else:
            assert 400 <= r.status_code < 500, (path.name, r.status_code)
            msg = r.json()["error"]
            assert "\n" not in msg and "Traceback" not in msg
            if data:
                assert msg == expected.splitlines()[0], (path.name, msg, expected)
