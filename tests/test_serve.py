"""`pan serve`: the API under the page, then the page itself in a real (headless) browser."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pan_cli.datasets.images import write_image
from pan_cli.datasets.photos import builtin_photo
from pan_cli.store.checkpoint import PRETRAINED

IN_CI = os.environ.get("CI") == "true"
try:
    import uvicorn  # noqa: F401
    from starlette.testclient import TestClient
except ImportError:  # CI installs the extra (make test installs '.[dev]'): never skip there
    if IN_CI:
        raise
    pytest.skip("pip install 'pan[serve]'", allow_module_level=True)

from pan_cli.serve.app import SMALL_PIXELS, Model, allowed_hosts, create_app, find_models  # noqa: E402

CPU = torch.device("cpu")


def png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()).save(buffer, "PNG")
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def shipped():
    return find_models([], CPU, runs=Path("/nonexistent"))


@pytest.fixture(scope="module")
def client(shipped):
    return TestClient(create_app(shipped, max_upload=2**20), base_url="http://localhost")


def test_models_lists_the_shipped_ones_by_id_never_by_path(client):
    models = client.get("/api/models").json()
    assert {m["task"] for m in models} == {"derain", "inpaint"}
    assert all(set(m) == {"id", "task", "label", "mask"} for m in models)
    assert [m["mask"] for m in models if m["task"] == "inpaint"] == [True]
    assert not any("/" in m["id"] or ".pt" in m["label"] for m in models)


def test_run_derains_an_upload_and_returns_a_png_of_its_size(client):
    image = builtin_photo("coffee")[:, :90, :120].contiguous()
    reply = client.post("/api/run", data={"task": "derain"}, files={"image": ("c.png", png(image), "image/png")})
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert decode(reply.content).shape == (90, 120, 3)


def test_inpaint_changes_only_the_masked_pixels(client):
    image = builtin_photo("astronaut")[:, 100:196, 100:228].contiguous()
    mask = torch.zeros(96, 128, dtype=torch.uint8)
    mask[30:60, 40:90] = 255
    reply = client.post("/api/run", data={"task": "inpaint"},
                        files={"image": ("a.png", png(image), "image/png"), "mask": ("m.png", png(mask), "image/png")})
    assert reply.status_code == 200
    out, original, hole = decode(reply.content), image.permute(1, 2, 0).numpy(), mask.numpy() > 0
    assert np.array_equal(out[~hole], original[~hole])
    assert np.abs(out[hole].astype(int) - original[hole]).mean() > 1


@pytest.mark.parametrize("fields, files, status, words", [
    ({"task": "derain"}, {"image": ("x.png", b"this is not an image", "image/png")}, 400, "not an image file"),
    ({"task": "derain"}, {}, 400, "no image"),
    ({"task": "fly"}, {"image": ("x.png", b"x", "image/png")}, 400, "unknown task"),
    ({"task": "derain", "model": "../../etc/passwd"}, {"image": ("x.png", b"x", "image/png")}, 404, "no model"),
    ({"task": "labels2street"}, {"image": ("x.png", b"x", "image/png")}, 404, "no model for labels2street"),
    ({"task": "derain"}, {"image": ("big.png", b"\0" * (2**20 + 10), "image/png")}, 413, "over the limit of 1 MB"),
])
def test_bad_requests_get_a_4xx_with_a_json_error(client, fields, files, status, words):
    reply = client.post("/api/run", data=fields, files=files)
    assert reply.status_code == status and words in reply.json()["error"], reply.text
    assert client.get("/api/models").status_code == 200  # and the server keeps serving


def test_a_truncated_image_is_a_400_naming_the_problem(client):
    whole = png(builtin_photo("coffee")[:, :64, :64].contiguous())
    reply = client.post("/api/run", data={"task": "derain"},
                        files={"image": ("t.png", whole[: len(whole) // 2], "image/png")})
    assert reply.status_code == 400 and reply.json()["error"].startswith("the image: ")


def test_a_decompression_bomb_and_a_wrong_size_mask_are_refused(client):
    bomb = io.BytesIO()
    Image.new("L", (10000, 10000)).save(bomb, "PNG")  # 100 MP in a few KB
    reply = client.post("/api/run", data={"task": "derain"}, files={"image": ("b.png", bomb.getvalue(), "image/png")})
    assert reply.status_code == 400 and "over the limit" in reply.json()["error"]
    image, mask = builtin_photo("coffee")[:, :64, :64].contiguous(), torch.full((32, 32), 255, dtype=torch.uint8)
    reply = client.post("/api/run", data={"task": "inpaint"},
                        files={"image": ("a.png", png(image), "image/png"), "mask": ("m.png", png(mask), "image/png")})
    assert reply.status_code == 400 and "the mask is 32x32 but the image is 64x64" in reply.json()["error"]


def test_serve_warns_off_localhost_and_says_how_to_install_a_missing_extra(run_pan, monkeypatch):
    from pan_cli.serve.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (
        (_ for _ in ()).throw(ImportError(name)) if name == "uvicorn" else real_import(name, *a, **k)))
    result = run_pan("serve")
    assert result.exit_code == 1 and "pip install 'pan[serve]'" in result.stderr


def test_pan_serve_serves_the_page_and_the_api(tmp_path):
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "pan_cli", "serve", "--port", str(port)], cwd=tmp_path,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        assert f"serving 2 models on http://127.0.0.1:{port}/" in line
        for _ in range(100):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/").read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "<title>pan</title>" in page and 'src="app.js"' in page
        models = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models").read().decode()
        assert '"task":"derain"' in models.replace(" ", "")
    finally:
        server.terminate()
        server.wait(10)


# --- the page in headless Chromium --------------------------------------------------------

CHROMEDRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serving:
    """A uvicorn server on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Serving:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture(scope="module")
def page_server(shipped):
    with Serving(create_app(shipped, max_upload=2**20)) as serving:
        yield serving.url


def _form(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart body and its content type, for urllib."""
    body, boundary = io.BytesIO(), "pan-test-boundary"
    for name, filename, data in parts:
        body.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"".encode())
        body.write(f"; filename=\"{filename}\"\r\nContent-Type: image/png".encode() if filename else b"")
        body.write(b"\r\n\r\n" + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def _post(url: str, task: str, image: torch.Tensor, headers: dict | None = None, timeout: float = 120):
    """POST /api/run with urllib: (status, body)."""
    import urllib.error
    import urllib.request

    body, kind = _form([("task", None, task.encode()), ("image", "i.png", png(image))])
    request = urllib.request.Request(url + "api/run", data=body, method="POST",
                                     headers={"Content-Type": kind, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Gate:
    """Wraps a predictor: predict() waits until the test opens the gate (so a test can hold a
    request inside the model for as long as it needs, on any machine)."""

    def __init__(self, predictor, above: int = 0):
        self.predictor, self.above = predictor, above  # only images of more than `above` pixels wait
        self.entered, self.open = threading.Event(), threading.Event()
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def predict(self, image, mask=None):
        self.calls += 1
        if image.shape[1] * image.shape[2] <= self.above:
            return self.predictor.predict(image, mask)
        self.entered.set()
        assert self.open.wait(60), "the gate was never opened"
        return self.predictor.predict(image, mask)


def _gated(shipped, above: int = 0) -> tuple[list[Model], Gate]:
    derain = next(m for m in shipped if m.task == "derain")
    gate = Gate(derain.predictor, above)
    return [Model("m0", "derain", derain.label, gate)], gate


def test_the_server_answers_while_a_model_runs(shipped):
    """Inference runs in a worker thread: the event loop answers while a request is inside the
    model (held there by a gate, so no timing is assumed)."""
    import urllib.request

    models, gate = _gated(shipped)
    with Serving(create_app(models)) as serving:
        finished = {}
        worker = threading.Thread(target=lambda: finished.update(
            reply=_post(serving.url, "derain", builtin_photo("coffee")[:, :60, :80].contiguous())))
        worker.start()
        assert gate.entered.wait(60)
        listing = urllib.request.urlopen(serving.url + "api/models", timeout=10).read()  # while the model runs
        assert b"derain" in listing and not finished
        gate.open.set()
        worker.join(60)
    assert finished["reply"][0] == 200 and decode(finished["reply"][1]).shape == (60, 80, 3)


def test_a_small_request_is_answered_while_large_ones_queue_and_a_full_queue_is_503(shipped):
    models, gate = _gated(shipped, above=SMALL_PIXELS)
    large = torch.zeros(3, 1100, 1000, dtype=torch.uint8)  # over the small lane's 1 MP
    with Serving(create_app(models, queue=1)) as serving:
        replies = []
        runs = [threading.Thread(target=lambda: replies.append(_post(serving.url, "derain", large)))
                for _ in range(2)]
        runs[0].start()
        assert gate.entered.wait(60)  # the first large request is in the model
        runs[1].start()
        time.sleep(0.5)  # the second waits in the large lane's queue (its one place)
        status, body = _post(serving.url, "derain", large, timeout=30)
        assert status == 503 and "busy" in json.loads(body)["error"]
        # a small image has a lane of its own: answered while the large ones wait
        status, body = _post(serving.url, "derain", builtin_photo("coffee")[:, :40, :40].contiguous(), timeout=30)
        assert status == 200 and decode(body).shape == (40, 40, 3) and len(replies) == 0
        gate.open.set()
        for run in runs:
            run.join(120)
    assert sorted(status for status, _ in replies) == [200, 200]


def test_a_request_whose_client_left_while_it_waited_is_dropped(shipped):
    models, gate = _gated(shipped)
    image = builtin_photo("coffee")[:, :40, :40].contiguous()
    with Serving(create_app(models)) as serving:
        first = threading.Thread(target=lambda: _post(serving.url, "derain", image))
        first.start()
        assert gate.entered.wait(60)
        body, kind = _form([("task", None, b"derain"), ("image", "i.png", png(image))])
        with socket.create_connection(("127.0.0.1", serving.port)) as client:  # sends, then leaves
            client.sendall(f"POST /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.5)  # its body is read and it waits behind the first
        gate.open.set()
        first.join(60)
        time.sleep(1)
    assert gate.calls == 1  # the abandoned request never reached the model


def test_a_chunked_upload_is_cut_at_the_limit_as_it_arrives(shipped):
    """A body without Content-Length (chunked) is counted as it arrives: the server answers 413
    after about --max-upload, holding no more than that (whatever else the client sends is
    read and dropped, not kept)."""
    import http.client

    before = _rss()
    with Serving(create_app(shipped, max_upload=2**20)) as serving:
        connection = http.client.HTTPConnection("127.0.0.1", serving.port, timeout=30)
        connection.putrequest("POST", "/api/run")
        connection.putheader("Content-Type", "multipart/form-data; boundary=x")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        head = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        connection.send(f"{len(head):x}\r\n".encode() + head + b"\r\n")
        chunk, sent = b"\0" * 2**20, 0
        try:
            while sent < 2**30:  # a file part of up to 1 GB
                connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:  # the server stopped reading and answered
            pass
        reply = connection.getresponse()
        assert reply.status == 413 and "over the limit of 1 MB" in json.loads(reply.read())["error"]
        assert _rss() - before < 16 * 2**20, (sent, _rss() - before)  # the limit plus a few MB, not what was sent


def _rss() -> int:
    """This process's resident memory in bytes (the test server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_foreign_host_and_a_cross_origin_call_are_refused(shipped):
    app = create_app(shipped)
    foreign = TestClient(app, base_url="http://attacker.example")
    assert foreign.get("/api/models").status_code == 421  # DNS rebinding: the name is not this server's
    local = TestClient(app, base_url="http://127.0.0.1:8000")
    image = {"image": ("c.png", png(builtin_photo("coffee")[:, :32, :32].contiguous()), "image/png")}
    reply = local.post("/api/run", data={"task": "derain"}, files=image, headers={"Origin": "https://evil.example"})
    assert reply.status_code == 403 and "cross-origin" in reply.json()["error"]
    assert local.post("/api/run", data={"task": "derain"}, files=image,
                      headers={"Origin": "http://127.0.0.1:8000"}).status_code == 200  # the page itself
    assert local.post("/api/run", data={"task": "derain"}, files=image).status_code == 200  # curl: no Origin
    assert TestClient(app, base_url="http://[::1]:8000").get("/api/models").status_code == 200
    everyone = TestClient(create_app(shipped, hosts=allowed_hosts("0.0.0.0")), base_url="http://my-box.lan")
    assert everyone.get("/api/models").status_code == 200


def test_a_queue_of_none_still_runs_a_request_when_the_model_is_free(shipped):
    client = TestClient(create_app(shipped, queue=0), base_url="http://localhost")
    image = {"image": ("c.png", png(builtin_photo("coffee")[:, :32, :32].contiguous()), "image/png")}
    assert client.post("/api/run", data={"task": "derain"}, files=image).status_code == 200


def test_an_image_over_the_pixel_budget_is_refused(shipped):
    client = TestClient(create_app(shipped, max_pixels=50 * 50), base_url="http://localhost")
    reply = client.post("/api/run", data={"task": "derain"},
                        files={"image": ("c.png", png(builtin_photo("coffee")[:, :60, :60].contiguous()), "image/png")})
    assert reply.status_code == 400 and "over the limit of 2500 pixels" in reply.json()["error"]


def test_serve_refuses_a_bad_tile_and_a_bad_checkpoint_before_serving_and_leaves_out_a_damaged_run(
        run_pan, tmp_path, monkeypatch):
    monkeypatch.setattr("uvicorn.Server.run", lambda self, sockets=None: None)  # start, do not serve
    tile = run_pan("serve", "--tile", "1", "--port", str(_free_port()))
    assert tile.exit_code == 2 and "--tile 1 is too small" in tile.stderr and "serving" not in tile.stderr
    state = torch.load(PRETRAINED["derain"], weights_only=True)
    state["config"]["task"] = "juggle"
    torch.save(state, tmp_path / "odd.pt")
    odd = run_pan("serve", "--checkpoint", tmp_path / "odd.pt", "--port", str(_free_port()))
    assert odd.exit_code == 2 and "field 'task'" in odd.stderr and "odd.pt" in odd.stderr
    (tmp_path / "runs" / "derain").mkdir(parents=True)
    (tmp_path / "runs" / "derain" / "latest.pt").write_bytes(b"PK\x03\x04 damaged")
    monkeypatch.chdir(tmp_path)
    damaged = run_pan("serve", "--port", str(_free_port()))
    assert damaged.exit_code == 0 and "leaving out runs/derain/latest.pt" in damaged.stderr
    assert "serving 2 models" in damaged.stderr


def test_serve_on_a_busy_port_is_one_line_and_says_nothing_of_serving(run_pan):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = run_pan("serve", "--port", str(taken.getsockname()[1]))
    assert result.exit_code == 1 and "serving" not in result.stderr
    assert result.stderr.startswith("pan: error: cannot listen on 127.0.0.1:") and len(result.stderr.splitlines()) == 1


@pytest.fixture(scope="module")
def browser():
    if CHROMEDRIVER is None:
        if IN_CI:  # CI installs chromium and chromium-driver (.ci/run): never skip there
            pytest.fail("chromedriver is not installed (apt-get install chromium chromium-driver)")
        pytest.skip("chromedriver is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,800"):
        options.add_argument(flag)
    if shutil.which("chromium"):
        options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, seconds: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(condition)


def _result_png(driver) -> np.ndarray:
    data = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById('after').src).then(r => r.blob()).then(blob => {
          const reader = new FileReader();
          reader.onload = () => done(reader.result.split(',')[1]);
          reader.readAsDataURL(blob);
        });""")
    return decode(base64.b64decode(data))


def test_paint_a_stroke_run_and_compare_in_a_real_browser(page_server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    image = builtin_photo("astronaut")[:, 40:200, 120:360].contiguous()  # 240x160: shown at its own size
    write_image(tmp_path / "photo.png", image)
    browser.get(page_server)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#task option"))
    Select(browser.find_element(By.ID, "task")).select_by_value("inpaint")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "photo.png"))
    paint = _wait(browser, lambda d: d.find_element(By.ID, "paint") if d.find_element(By.ID, "paint").is_displayed()
                  else None)
    assert paint.size == {"width": 240, "height": 160}  # 1 CSS px = 1 image px
    brush = int(browser.find_element(By.ID, "size").get_attribute("value"))  # diameter in image px
    # a horizontal stroke with real mouse events, from (60, 80) to (180, 80) in image pixels
    ActionChains(browser).move_to_element_with_offset(paint, 60 - 120, 0).click_and_hold() \
        .move_by_offset(40, 0).move_by_offset(40, 0).move_by_offset(40, 0).release().perform()
    browser.find_element(By.ID, "run").click()
    _wait(browser, lambda d: d.find_element(By.ID, "after").is_displayed())
    out, original = _result_png(browser), image.permute(1, 2, 0).numpy()
    assert out.shape == original.shape
    rows, cols = np.mgrid[0:160, 0:240]
    distance = np.hypot(rows - 80, np.clip(cols, 60, 180) - cols)  # to the stroke's segment
    inside, outside = distance < brush / 2 - 2, distance > brush / 2 + 2
    assert np.array_equal(out[outside], original[outside])
    assert (np.abs(out[inside].astype(int) - original[inside]).sum(axis=1) > 0).mean() > 0.9
    assert browser.find_element(By.ID, "download").get_attribute("download") == "photo-pan.png"
    assert browser.find_element(By.ID, "slider").is_displayed()
    browser.find_element(By.ID, "slider").send_keys("\ue012" * 10)  # left arrow: more of the result shows
    shot = tmp_path / "serve.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("PAN_SCREENSHOT"):  # README's picture: PAN_SCREENSHOT=docs/serve.png pytest -k browser
        shutil.copy(shot, os.environ["PAN_SCREENSHOT"])


def test_the_page_shows_errors_in_words(page_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    (tmp_path / "notes.png").write_text("not an image at all")
    browser.get(page_server)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#task option"))
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "notes.png"))
    error = _wait(browser, lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").is_displayed()
                  else None)
    assert "notes.png: it is not an image" in error.text
    # a photo the browser opens but the server refuses (over its 1 MB limit): the server's words
    noise = torch.randint(0, 256, (3, 700, 700), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / "large.png", noise)
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "large.png"))
    _wait(browser, lambda d: not d.find_element(By.ID, "run").get_attribute("disabled"))
    browser.find_element(By.ID, "run").click()
    error = _wait(browser, lambda d: d.find_element(By.ID, "error") if "limit" in d.find_element(By.ID, "error").text
                  else None)
    assert "over the limit of 1 MB" in error.text
