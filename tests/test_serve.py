"""serve.py (API, limits, micro-batching, a real browser), the bundled students in models/, and sharing a
student: model card, save_pretrained / package_student, the Hugging Face Hub (offline cache, fake upload)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import corpus
import serve
from card import model_card
from config import BACKENDS, BUNDLED_NAMES
from conftest import ROOT, make_reviews
from model import Student, bundled_student, package_student

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BUNDLES = sorted(p for p in (ROOT / "models").glob("nsmc-*") if (p / "config.json").is_file())
NSMC_TEST = ROOT.parent / "shared" / "data" / "nsmc" / "ratings_test.txt"  # beside the checkout, as in CI


@pytest.fixture(scope="module")
def student(run_dir) -> Student:
    # float ONNX: int8's dynamic quantization scales activations per batch, so its probabilities (rarely its
    # labels) depend on which texts share a batch; the exact comparisons below need a batch-independent model
    return Student.from_pretrained(run_dir / "student", backend="onnx")


def make_client(student: Student, **settings) -> TestClient:
    cfg = serve.ServeConfig(**settings)
    return TestClient(serve.create_app(student, cfg, source="test"))


# -----------------------------------------------------------------------------
# the API


def test_health_model_card_page_and_docs(student):
    with make_client(student) as client:
        assert client.get("/health").json() == {"status": "ok"}
        card = client.get("/model").json()
        assert card["name"] == "tiny-v300-none-a1" and card["test_accuracy"] == 0.8123
        assert card["params"] == sum(p.numel() for p in student.model.parameters()) and card["size"] == "tiny"
        assert card["backend"] == "onnx" and card["labels"] == ["negative", "positive"]
        page = client.get("/")
        assert page.status_code == 200 and "한국어 감성 분석" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN: the app serves everything
        assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_head_health_and_docs_pages_without_a_cdn(student):
    with make_client(student) as client:
        head = client.head("/health")
        assert head.status_code == 200 and head.content == b""
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200 and "http://" not in page.text and "https://" not in page.text
            assets = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
            assert assets and all(client.get(asset).status_code == 200 for asset in assets)


def test_model_card_names_the_student_not_the_server_path(run_dir, student):
    cfg = serve.ServeConfig()
    app = serve.create_app(student, cfg, source=str(run_dir / "student"))
    with TestClient(app) as client:
        card = client.get("/model")
    assert card.json()["source"] == "tiny-v300-none-a1" and str(run_dir) not in card.text
    assert serve.source_name(str(bundled_student())) == BUNDLED_NAMES[0]
    assert serve.source_name("someone/distilko-tiny") == "someone/distilko-tiny"  # a Hub id as given


def test_app_serves_again_after_a_restart(student):
    client = make_client(student)
    for _ in range(2):  # lifespan: start, stop, start again (the model thread is recreated)
        with client:
            assert client.post("/predict", json={"text": "좋아요"}).status_code == 200


def test_predict_answers_every_text_in_order(student):
    texts = ["정말 재밌어요 최고", "시간 아까움 최악", "그냥 그랬어요", "명작 감동"]
    expected = student.predict_proba(texts)
    with make_client(student) as client:
        response = client.post("/predict", json={"texts": texts})
        single = client.post("/predict", json={"text": texts[2]}).json()["predictions"]
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["index"] for p in predictions] == [0, 1, 2, 3]
    for p, row in zip(predictions, expected):
        assert p["label_id"] == int(row.argmax()) and p["label"] == student.labels[p["label_id"]]
        assert np.allclose([p["probabilities"]["negative"], p["probabilities"]["positive"]], row, atol=1e-5)
    assert len(single) == 1 and single[0]["probabilities"] == predictions[2]["probabilities"]


BAD_REQUESTS = [
    (b"{not json", 422, "json"),
    (b'{"texts": [1, 2]}', 422, "string"),
    (b'{"texts": "one string"}', 422, "list"),
    (b'{"texts": []}', 422, "empty"),
    (b'{"texts": ["a"], "text": "b"}', 422, "either"),
    (b"{}", 422, "either"),
    (b"[]", 422, "dictionary"),
    (b'{"sentences": ["a"]}', 422, "extra"),
    (json.dumps({"texts": ["좋아요"] * 9}).encode(), 422, "limit is 8"),
    (json.dumps({"text": "가" * 101}).encode(), 422, "limit is 100"),
    (json.dumps({"texts": ["가" * 90] * 8}).encode(), 413, "over the limit"),
    (b'{"texts": ["ok", "\\ud800"]}', 422, "texts[1] is not valid utf-8 text: it holds a lone surrogate"),
    (b'{"text": "a\\udc80"}', 422, "text is not valid utf-8 text: it holds a lone surrogate at character 1"),
]


@pytest.mark.parametrize("body, status, fragment", BAD_REQUESTS)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(student, body, status, fragment):
    with make_client(student, max_texts=8, max_chars=100, max_body_bytes=2000) as client:
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status
        assert fragment in json.dumps(response.json(), ensure_ascii=False).lower()
        assert client.post("/predict", json={"text": "좋아요"}).status_code == 200


def test_streamed_body_over_the_limit_is_refused(student):
    def chunks():
        yield b'{"texts": ["'
        for _ in range(10):
            yield "좋아요".encode() * 100
        yield b'"]}'

    with make_client(student, max_body_bytes=2000) as client:
        response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413 and "2,000 bytes" in response.json()["detail"]
        assert client.get("/health").status_code == 200


def test_empty_and_whitespace_texts_do_not_fail_the_batch(student):
    texts = ["정말 재밌어요", "", "   ", "시간 아까움"]
    with make_client(student) as client:
        response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["index"] for p in predictions] == [0, 1, 2, 3]
    expected = student.predict(["정말 재밌어요", "시간 아까움"])
    assert [predictions[0]["label_id"], predictions[3]["label_id"]] == expected
    for p in predictions[1:3]:  # a prediction of its own or an error of its own
        assert ("label" in p) != ("error" in p)


def test_request_texts_are_not_logged(student, caplog):
    secret = "비밀문장 아무도 보면 안됨"
    with caplog.at_level("DEBUG"), make_client(student) as client:
        assert client.post("/predict", json={"texts": [secret, ""]}).status_code == 200
    assert secret not in caplog.text and "비밀문장" not in caplog.text


# -----------------------------------------------------------------------------
# micro-batching


class CountingStudent:
    """Wraps a Student and records the size of every predict_proba call."""

    def __init__(self, student: Student):
        self.student, self.labels, self.calls = student, student.labels, []

    def predict_proba(self, texts):
        self.calls.append(len(texts))
        time.sleep(0.005)  # a model call takes time: requests arriving meanwhile wait for the next batch
        return self.student.predict_proba(texts)


async def fire(predictor: serve.Predictor, requests: list[list[str]]) -> list[list[dict]]:
    await predictor.start()
    try:
        return await asyncio.gather(*(predictor.predict(texts) for texts in requests))
    finally:
        await predictor.stop()


def test_concurrent_requests_share_model_calls(student):
    requests = [[text] for text, _ in make_reviews(40, seed=3)]
    counting = CountingStudent(student)
    batched = asyncio.run(fire(serve.Predictor(counting, max_batch=16), requests))
    assert sum(counting.calls) == 40 and max(counting.calls) <= 16 and len(counting.calls) <= 6
    expected = student.predict_proba([r[0] for r in requests])
    for (row,), probs in zip(batched, expected):  # each request gets its own answer back
        assert row["label_id"] == int(probs.argmax())
        assert np.isclose(row["probabilities"]["positive"], probs[1], atol=1e-5)


def test_micro_batch_with_a_bad_text_answers_the_others(student):
    requests = [["정말 재밌어요"], [""], ["시간 아까움", "최고"], ["좋아요"]]
    counting = CountingStudent(student)
    answers = asyncio.run(fire(serve.Predictor(counting, max_batch=64), requests))
    assert [len(a) for a in answers] == [1, 1, 2, 1]
    for answer in (answers[0], answers[2], answers[3]):
        assert all("label" in row for row in answer)
    assert ("label" in answers[1][0]) != ("error" in answers[1][0])


POISON = "이 문장은 모델을 망가뜨림"  # GatedModel fails every call that holds it


class GatedModel:
    """A slow stand-in for the student: records each call's texts; the first call waits for `gate`, so
    requests queue up behind it; a call holding POISON raises. Label: the parity of the text's length."""

    labels = ("negative", "positive")

    def __init__(self):
        self.calls, self.started, self.gate = [], threading.Event(), threading.Event()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.started.set()
            assert self.gate.wait(60), "the test never opened the gate"
        if POISON in texts:
            raise RuntimeError("this batch holds the poisoned text")
        return np.array([[1 - len(t) % 2, len(t) % 2] for t in texts], dtype=np.float32)


async def behind_a_running_call(predictor: serve.Predictor, model: GatedModel, requests: list[list[str]]):
    """Start one call and, while it runs, send `requests`; then let the call finish. The answers (or
    exceptions) of the requests, in order."""
    await predictor.start()
    try:
        first = asyncio.create_task(predictor.predict(["먼저"]))
        assert await asyncio.to_thread(model.started.wait, 30)
        tasks = [asyncio.create_task(predictor.predict(texts)) for texts in requests]
        await asyncio.sleep(0)  # each task runs up to its wait: all of them are queued now
        model.gate.set()
        answers = await asyncio.gather(first, *tasks, return_exceptions=True)
    finally:
        await predictor.stop()
    return answers[1:]


def test_requests_that_arrive_during_a_call_share_the_next_one_up_to_max_batch():
    requests = [
        t.split() for t in ("a", "bb ccc", "dddd e ff", "g", "hhh ii", "j jj jjj jjjj jjjjj jjjjjj", "k")
    ]
    model = GatedModel()
    predictor = serve.Predictor(model, window_s=0, max_batch=4)
    answers = asyncio.run(behind_a_running_call(predictor, model, requests))
    # the call that ran, then the queue in order, cut where the next request would pass 4 texts; the
    # 6-text request exceeds max_batch on its own and is a call of its own
    batches = [t.split() for t in ("먼저", "a bb ccc", "dddd e ff g", "hhh ii")]
    assert model.calls == [*batches, requests[5], ["k"]]
    for texts, answer in zip(requests, answers):  # each request gets the rows of its own texts
        assert [row["label_id"] for row in answer] == [len(t) % 2 for t in texts]


def test_a_lone_request_is_not_delayed_and_the_window_is_an_extra_wait():
    async def one(predictor: serve.Predictor) -> float:
        await predictor.start()
        try:
            start = time.perf_counter()
            assert (await predictor.predict(["좋아요"]))[0]["label"] == "positive"
            return time.perf_counter() - start
        finally:
            await predictor.stop()

    assert serve.ServeConfig().batch_window_ms == 0
    model = GatedModel()
    model.gate.set()
    assert asyncio.run(one(serve.Predictor(model, max_batch=64))) < 0.5  # no wait: the model was idle
    assert asyncio.run(one(serve.Predictor(model, max_batch=64, window_s=1.0))) >= 1.0
    assert model.calls == [["좋아요"], ["좋아요"]]


def test_a_failing_batch_is_retried_one_request_at_a_time():
    requests = [["좋아"], [POISON], ["별로", "최고"]]
    model = GatedModel()
    answers = asyncio.run(behind_a_running_call(serve.Predictor(model, max_batch=64), model, requests))
    assert model.calls[1:] == [["좋아", POISON, "별로", "최고"], ["좋아"], [POISON], ["별로", "최고"]]
    assert [row["label_id"] for row in answers[0] + answers[2]] == [0, 0, 0]
    assert isinstance(answers[1], RuntimeError)


def test_a_poisoned_micro_batch_fails_only_its_own_request(student, monkeypatch):
    """Issue 26: 30 concurrent good requests beside a lone surrogate (the tokenizer's TypeError) and a text
    the model fails on, all queued behind one running call: every good request gets its answer."""
    model = GatedModel()
    gated = copy.copy(student)
    gated.predict_proba = model.predict_proba
    queued = []
    predict = serve.Predictor.predict

    async def counted(self, texts):
        queued.append(texts)
        return await predict(self, texts)

    monkeypatch.setattr(serve.Predictor, "predict", counted)
    server = serve.BackgroundServer(serve.create_app(gated, serve.ServeConfig()), "127.0.0.1", 0).start()
    good = [f"좋은 영화 {'!' * i}" for i in range(30)]
    bodies = [json.dumps({"text": text}).encode() for text in good]
    bodies += [b'{"texts": ["\\ud800"]}', json.dumps({"texts": ["좋아", POISON]}).encode()]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            first = asyncio.create_task(client.post("/predict", json={"text": "먼저"}))
            assert await asyncio.to_thread(model.started.wait, 30)
            headers = {"content-type": "application/json"}
            tasks = [asyncio.create_task(client.post("/predict", content=b, headers=headers)) for b in bodies]
            while len(queued) < 1 + len(good) + 1:  # the surrogate is refused before it reaches the model
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            model.gate.set()
            return [await first, *(await asyncio.gather(*tasks))]

    try:
        responses = asyncio.run(asyncio.wait_for(send_all(), 120))
    finally:
        server.stop()
    assert [r.status_code for r in responses[1:31]] == [200] * 30
    for text, response in zip(good, responses[1:31]):
        assert response.json()["predictions"][0]["label_id"] == len(text) % 2
    surrogate, poisoned = responses[31], responses[32]
    assert surrogate.status_code == 422 and "texts[0] is not valid UTF-8 text" in surrogate.json()["detail"]
    assert poisoned.status_code == 500
    assert poisoned.json()["detail"] == (
        "the model failed on this request (RuntimeError); other requests are unaffected"
    )
    assert any(POISON in call and len(call) > 2 for call in model.calls)  # it did share a call with others


def test_student_predict_refuses_a_lone_surrogate_and_non_sequences(student):
    with pytest.raises(ValueError, match=r"^texts\[1\] is not valid UTF-8 text: it holds a lone surrogate"):
        student.predict(["좋아요", "별로\ud800"])
    for bad, kind in (({"좋아요": 1}, "dict"), ({"좋아요"}, "set"), ((t for t in ["좋아요"]), "generator")):
        with pytest.raises(TypeError, match=rf"^texts must be a str or a sequence of str .*, not {kind}$"):
            student.predict(bad)
    texts = ["정말 재밌어요", "시간 아까움"]
    expected = student.predict(texts)
    assert student.predict(tuple(texts)) == student.predict(np.array(texts)) == expected


def test_serve_config_validation_and_cli_errors():
    with pytest.raises(
        ValueError, match=r"batch_window_ms \(--batch-window-ms\) must be a number in \[0, 1000\]"
    ):
        serve.ServeConfig(batch_window_ms=-1)
    with pytest.raises(ValueError, match=r"max_texts \(--max-texts\) must be in \[1, inf\), got 0"):
        serve.ServeConfig(max_texts=0)
    with pytest.raises(SystemExit, match=r"port \(--port\) must be in \[0, 65535\], got 70000"):
        serve.main(["--port", "70000"])
    with pytest.raises(SystemExit, match=r"workers \(--workers\) must be in \[1, inf\), got 0"):
        serve.main(["--workers", "0"])
    assert serve.build_parser().parse_args([]).backend == "onnx-int8"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_cli_refuses_a_missing_or_corrupt_student_in_one_line(run_dir, tmp_path, workers):
    with pytest.raises(SystemExit, match=r"^serve.py: student directory not found: \S+nope \(give runs/"):
        serve.main(["--student", str(tmp_path / "nope"), "--workers", workers])
    broken = tmp_path / "broken"
    shutil.copytree(run_dir / "student", broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 100)  # truncated
    with pytest.raises(SystemExit, match=r"^serve.py: \S+model.safetensors does not match its sha256[^\n]+$"):
        serve.main(["--student", str(broken), "--workers", workers])


# -----------------------------------------------------------------------------
# running it: command line with workers, a notebook thread, a real browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited early: {process.communicate()[0]}"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not come up within {timeout:.0f} s")


def test_command_line_with_two_workers(run_dir):
    port = free_port()
    command = [
        sys.executable,
        str(ROOT / "serve.py"),
        "--student",
        str(run_dir / "student"),
        "--backend",
        "torch",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        url = f"http://127.0.0.1:{port}"
        response = httpx.post(url + "/predict", json={"texts": ["정말 재밌어요", "최악"]}, timeout=10)
        assert response.status_code == 200 and len(response.json()["predictions"]) == 2
        assert httpx.get(f"http://127.0.0.1:{port}/model", timeout=10).json()["backend"] == "torch"
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "정말 재밌어요" not in output  # the access log names paths, never texts
    assert output.count("Started server process") == 2


def test_start_in_background_and_show(run_dir, capsys):
    server = serve.start_in_background(str(run_dir / "student"), backend="onnx")
    try:
        assert server.port > 0
        assert httpx.get(server.url + "/health", timeout=10).json() == {"status": "ok"}
        assert serve.show(server) == server.url
        assert server.url in capsys.readouterr().out
    finally:
        server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=2)


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it",
)
def test_demo_page_in_a_real_browser(tmp_path):
    """The demo page classifies two reviews, and /docs (Swagger UI) and /redoc (ReDoc) render, all offline."""
    from playwright.sync_api import Route, sync_playwright

    assert CHROMIUM is not None, "chromium is missing: .ci/run installs it with apt-get"
    sentences = ["배우들 연기가 정말 최고였고 스토리도 감동적이에요", "돈 아깝고 지루해서 중간에 나왔습니다"]
    blocked = []

    def server_only(route: Route) -> None:  # offline: anything but the server itself is refused
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    server = serve.start_in_background()  # the bundled default student, as a new user gets it
    try:
        response = httpx.post(server.url + "/predict", json={"texts": sentences}, timeout=10)
        expected = response.json()["predictions"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            context = browser.new_context(viewport={"width": 820, "height": 640})
            context.route("**/*", server_only)
            page = context.new_page()
            page.goto(server.url + "/")
            page.wait_for_selector("#card tr")  # the model card arrived
            page.fill("#input", "\n".join(sentences))
            page.click("#submit")
            page.wait_for_selector("#results .result:nth-child(2) .prob")
            labels = page.locator("#results .label").all_inner_texts()
            probs = page.locator("#results .prob").all_inner_texts()
            card = page.inner_text("#card")
            shot = tmp_path / "serve_demo.png"
            page.screenshot(path=str(shot), full_page=True)
            page.goto(server.url + "/docs")  # Swagger UI: its operations list, rendered by its own script
            page.wait_for_selector(".opblock-summary-path[data-path='/predict']")
            operations = page.locator(".opblock-summary-path").all_inner_texts()
            docs_blocked = list(blocked)
            page.goto(server.url + "/redoc")  # ReDoc: its menu of operations
            page.wait_for_selector("text=Predict")
            browser.close()
    finally:
        server.stop()
    assert operations == ["/health", "/model", "/predict"] and docs_blocked == []
    assert set(blocked) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}  # ReDoc's footer logo only
    # a clearly positive and a clearly negative review, classified by the bundled student
    assert [p["label"] for p in expected] == ["positive", "negative"]
    assert labels == ["긍정 positive", "부정 negative"]
    assert probs == [f"{100 * p['probabilities'][p['label']]:.1f}%" for p in expected]
    assert "test accuracy" in card and "%" in card
    assert shot.stat().st_size > 10_000
    if os.environ.get("DISTILKO_SCREENSHOT"):  # e.g. results/serve_demo.png for the README
        shutil.copyfile(shot, os.environ["DISTILKO_SCREENSHOT"])


# -----------------------------------------------------------------------------
# the bundled students


def test_bundled_students_exist_and_the_best_on_validation_serves_by_default():
    """config.BUNDLED_NAMES is ordered by accuracy on the validation reviews no bundle trained on, as
    results/paired.json measured it (test is never used to choose)."""
    assert {p.name for p in BUNDLES} == set(BUNDLED_NAMES), "models/ differs from config.BUNDLED_NAMES"
    rows = json.loads((ROOT / "results" / "paired.json").read_text(encoding="utf-8"))["rows"]
    valid = {Path(r["model"]).name: r["splits"]["valid"]["accuracy"] for r in rows}
    assert set(BUNDLED_NAMES) <= set(valid), "a bundle is missing in results/paired.json: run paired.py"
    assert list(BUNDLED_NAMES) == sorted(BUNDLED_NAMES, key=valid.get, reverse=True)  # best first
    assert bundled_student().name == BUNDLED_NAMES[0]
    assert serve.load(serve.ServeConfig(backend="torch"))[1] == str(bundled_student())


@pytest.mark.parametrize("bundle", BUNDLES, ids=[p.name for p in BUNDLES])
def test_bundled_student_matches_its_test_accuracy_on_every_backend(bundle):
    if not NSMC_TEST.is_file():
        pytest.skip(f"needs the NSMC test file {NSMC_TEST} (../shared/data/nsmc beside the checkout)")
    sample = corpus.parse_file(NSMC_TEST, "nsmc", "nsmc")[0].sample(n=1000, random_state=0)
    metrics = json.loads((bundle / "metrics.json").read_text(encoding="utf-8"))
    labels = sample["label"].to_numpy()
    # binomial standard error of an accuracy measured on len(sample) reviews; 3.5 of them is the tolerance
    tolerance = 3.5 * (metrics["test_accuracy"] * (1 - metrics["test_accuracy"]) / len(sample)) ** 0.5
    predictions = {}
    for backend in BACKENDS:
        student = Student.from_pretrained(bundle, backend=backend)
        predictions[backend] = np.array(student.predict(sample["text"].tolist()))
        accuracy = float((predictions[backend] == labels).mean())
        assert abs(accuracy - metrics["test_accuracy"]) < tolerance, (backend, accuracy, tolerance)
    assert (predictions["onnx"] == predictions["torch"]).all()
    assert (predictions["onnx-int8"] == predictions["torch"]).mean() > 0.99
    card = (bundle / "README.md").read_text(encoding="utf-8")
    assert card.count(f"{100 * metrics['test_accuracy']:.2f} %") == 1


# -----------------------------------------------------------------------------
# sharing: folders, model cards, the Hub


def test_save_pretrained_writes_a_loadable_folder_with_a_card(student, tmp_path):
    from transformers import AutoTokenizer

    folder = student.save_pretrained(tmp_path / "shared")
    names = {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "onnx",
        "vocab.txt",
        "metrics.json",
        "README.md",
    }
    assert {p.name for p in folder.iterdir()} >= names
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "language: ko" in card
    assert "81.23 %" in card and "tiny-v300-none-a1" in card
    assert "trained on the labels only" in card
    again = Student.from_pretrained(folder, backend="onnx")
    texts = ["정말 재밌어요", "시간 아까움"]
    assert np.allclose(again.predict_proba(texts), student.predict_proba(texts))
    assert again.metrics["test_accuracy"] == 0.8123 and again.training["run"] == "tiny-v300-none-a1"
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.model_max_length == student.config.max_length == 32
    assert len(tokenizer("좋아요 " * 100, truncation=True)["input_ids"]) == 32
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a student folder"):
        student.save_pretrained(tmp_path / "foreign")


def test_card_of_a_student_distilled_from_an_ensemble(student):
    distilled = copy.copy(student)
    distilled.metrics = {
        **student.metrics,
        "teacher": "ens2-0123abcd",
        "teachers": ["teacher_model/tfidf-lr-nsmc-0e1235e204", "runs/nsmc/base-v9000-none-a1/student"],
        "teacher_weights": [2.0, 1.0],
        "teacher_test_accuracy": 0.88078,
        "alpha": 0.1,
        "temperature": 2.0,
        "kd_loss": "kl",
        "unlabeled": "/data/nsmc/unlabeled.txt",
        "n_transfer": 300943,
    }
    card = model_card(distilled)
    assert "distilled (α = 0.1, T = 2.0, kl loss; Tang et al. 2019) from the teacher `ens2-0123abcd`" in card
    assert "(test 88.08 %), the weighted mean of tfidf-lr-nsmc-0e1235e204×2 + base-v9000-none-a1×1 |" in card
    assert "+ unlabeled transfer set `unlabeled.txt` (300,943 rows per epoch)" in card
    assert "/data/nsmc" not in card and "trained on the labels only" not in card


def test_package_student_from_a_run_and_refuses_unfinished_runs(run_dir, tmp_path):
    folder = package_student(run_dir, tmp_path / "bundle")
    assert json.loads((folder / "metrics.json").read_text())["test_accuracy"] == 0.8123
    assert (folder / "onnx" / "model-int8.onnx").is_file()
    unfinished = tmp_path / "unfinished" / "student"
    shutil.copytree(run_dir / "student", unfinished)
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        package_student(unfinished.parent, tmp_path / "other")


def fill_hub_cache(cache: Path, repo_id: str, folder: Path, revision: str = "a" * 40) -> None:
    """The real Hub cache layout: blobs/<hash>, snapshots/<rev>/<file> -> ../../blobs/<hash>, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = repo / "snapshots" / revision / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)


def run_offline(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", code]
    return subprocess.run(
        command, check=False, cwd=cache, env=env, capture_output=True, text=True, timeout=300
    )


def test_from_pretrained_hub_id_loads_from_the_local_hub_cache_offline(student, tmp_path):
    folder = student.save_pretrained(tmp_path / "upload")
    cache = tmp_path / "hub"
    fill_hub_cache(cache, "someone/distilko-tiny", folder)
    code = (
        "import json; from model import Student\n"
        "s = Student.from_pretrained('someone/distilko-tiny', backend='onnx')\n"
        "print(json.dumps({'p': s.predict_proba(['정말 재밌어요', '시간 아까움']).tolist(), 'm': s.metrics}))"
    )
    done = run_offline(code, cache)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert np.allclose(result["p"], student.predict_proba(["정말 재밌어요", "시간 아까움"]), atol=1e-6)
    assert result["m"]["test_accuracy"] == 0.8123

    missing = run_offline("from model import Student; Student.from_pretrained('someone/not-cached')", cache)
    assert missing.returncode != 0
    assert "FileNotFoundError: 'someone/not-cached' is not a local student folder" in missing.stderr
    assert "HF_HUB_OFFLINE" in missing.stderr


class FakeHfApi:
    """Records what push_to_hub asks of huggingface_hub.HfApi; no network (tests the call arguments only)."""

    def __init__(self, keep: Path):
        self.keep, self.calls = keep, []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        shutil.copytree(kwargs["folder_path"], self.keep)
        return "commit-info"


def test_push_to_hub_uploads_the_shareable_folder(student, tmp_path):
    api = FakeHfApi(tmp_path / "uploaded")
    assert student.push_to_hub("someone/distilko-tiny", private=True, api=api) == "commit-info"
    assert [(name, repo) for name, repo, _ in api.calls] == [
        ("create_repo", "someone/distilko-tiny"),
        ("upload_folder", "someone/distilko-tiny"),
    ]
    assert api.calls[0][2] == {"private": True, "exist_ok": True}
    card = (tmp_path / "uploaded" / "README.md").read_text(encoding="utf-8")
    assert 'Student.from_pretrained("someone/distilko-tiny", backend="onnx-int8")' in card
    again = Student.from_pretrained(tmp_path / "uploaded", backend="onnx")
    assert np.allclose(again.predict_proba(["좋아요"]), student.predict_proba(["좋아요"]), atol=1e-6)
