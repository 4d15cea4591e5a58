"""`pan serve`: the API under the page, then the page itself in a real (headless) browser."""

from __future__ import annotations

import base64
import io
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

from pan_cli.checkpoint import PRETRAINED
from pan_cli.datasets.images import write_image
from pan_cli.datasets.photos import builtin_photo

IN_CI = os.environ.get("CI") == "true"
try:
    import uvicorn  # noqa: F401
    from starlette.testclient import TestClient
except ImportError:  # CI installs the extra (make test installs '.[dev]'): never skip there
    if IN_CI:
        raise
    pytest.skip("pip install 'pan[serve]'", allow_module_level=True)

from pan_cli.serve import Model, create_app, find_models  # noqa: E402

CPU = torch.device("cpu")


def png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()).save(buffer, "PNG")
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(find_models([], runs=Path("/nonexistent")), CPU, max_upload=2**20))


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
    from pan_cli.commands.serve import is_loopback

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


@pytest.fixture(scope="module")
def page_server():
    import uvicorn

    models = [Model("m0", "inpaint", "inpaint: shipped model", PRETRAINED["inpaint"]),
              Model("m1", "derain", "derain: shipped model", PRETRAINED["derain"])]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(models, CPU, max_upload=2**20), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(5)


def test_the_server_answers_while_a_model_runs(page_server):
    """Inference runs in a worker thread: the event loop keeps answering meanwhile."""
    import urllib.request

    image = torch.nn.functional.interpolate(builtin_photo("coffee")[None].float(), size=(600, 900))[0]
    body, boundary = io.BytesIO(), "pan-test-boundary"
    parts = [("task", None, b"derain"), ("image", "c.png", png(image.round().to(torch.uint8)))]
    for name, filename, data in parts:
        body.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"".encode())
        body.write(f"; filename=\"{filename}\"\r\nContent-Type: image/png".encode() if filename else b"")
        body.write(b"\r\n\r\n" + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(page_server + "api/run", data=body.getvalue(), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    finished = {}
    worker = threading.Thread(target=lambda: finished.update(reply=urllib.request.urlopen(request).read(),
                                                                 at=time.perf_counter()))
    began = time.perf_counter()
    worker.start()
    time.sleep(0.3)
    urllib.request.urlopen(page_server + "api/models").read()
    answered = time.perf_counter()
    worker.join(120)
    assert decode(finished["reply"]).shape == (600, 900, 3)
    assert answered < finished["at"], (answered - began, finished["at"] - began)


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
