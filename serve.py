"""The web service: a FastAPI app around one student, with a demo page in Korean.

    python serve.py [--student models/nsmc-kiwi-kd | runs/nsmc/<run>/student | org/name] [--backend onnx-int8]
                    [--host 127.0.0.1] [--port 8000] [--workers N] [--max-batch 64] [--batch-window-ms 0]

Endpoints: GET / (the demo page), POST /predict ({"texts": [...]} or {"text": "..."}), GET or HEAD /health,
GET /model (the model card as JSON), GET /docs and /redoc (the OpenAPI pages, their scripts served from the
fastapi-offline package: no CDN). Without --student the most accurate bundled student is served: the first
of config.BUNDLED_NAMES found in models/ (models/nsmc-kiwi-kd).

Dynamic batching: a request that finds the model idle runs at once; requests that arrive while a model call
runs are answered together by the next call, up to --max-batch texts. --batch-window-ms lets a request wait
that long for others to join its call (default 0: no wait). A call that fails is retried one request at a
time, so only the faulty request gets an error. Each worker process loads the model once and runs it on one
thread. Request texts are never logged. In a notebook, start_in_background() runs the server on a thread and
show() displays the page."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from card import student_name
from config import BACKENDS
from model import Student, bundled_student
from settings import add_arguments, setting, validate_fields
from utils import count_parameters, one_line

ROOT = Path(__file__).resolve().parent
CONFIG_ENV = "DISTILKO_SERVE"  # ServeConfig as JSON, for worker processes
WORKER_START_TIMEOUT_S = 180
log = logging.getLogger("serve")


@dataclass
class ServeConfig:
    """What to serve, where, and the limits on requests: the one source of serve.py's options."""

    student: str | None = setting(
        None, "student folder or Hub id; None: the best bundled student in models/ (config.BUNDLED_NAMES)"
    )
    backend: str = setting("onnx-int8", "inference backend", choices=BACKENDS)
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: all)")
    port: int = setting(8000, "TCP port (0: any free port)", bounds="[0, 65535]")
    workers: int = setting(1, "worker processes, each with its own model", bounds="[1, inf)")
    threads: int = setting(1, "ONNX Runtime threads per worker", bounds="[1, inf)")
    max_batch: int = setting(
        64,
        "most texts in one model call: requests that arrive while the model runs share its next call up to "
        "this (a request with more texts runs alone)",
        bounds="[1, inf)",
    )
    batch_window_ms: float = setting(
        0.0,
        "how long a request may wait in milliseconds for others to join its model call (0: not at all; "
        "requests that arrive while the model runs share its next call anyway)",
        bounds="[0, 1000]",
    )
    max_texts: int = setting(256, "most texts in one request", bounds="[1, inf)")
    max_chars: int = setting(2000, "most characters in one text", bounds="[1, inf)")
    max_body_bytes: int = setting(1_000_000, "largest request body in bytes", bounds="[1, inf)")
    log_level: str = setting(
        "info",
        "uvicorn's log level (info logs one line per request: method, path, status)",
        choices=("debug", "info", "warning", "error"),
    )

    def __post_init__(self) -> None:
        validate_fields(self)


def source_name(source: str) -> str:
    """Where the student came from, without the server's paths: a folder's name (a run's student/ folder:
    the run's), a Hub id as given."""
    path = Path(source)
    if not path.is_dir():
        return source
    path = path.resolve()
    return path.parent.name if path.name == "student" else path.name


def model_info(student: Student, source: str) -> dict:
    """The model card of the page and GET /model: name, size, accuracy and teacher from the run's metrics."""
    metrics = student.metrics or {}
    return {
        "name": student_name(student),
        "source": source_name(source),
        "backend": student.backend,
        "size": student.config.size or "custom",
        "params": count_parameters(student.model),
        "size_bytes": metrics.get("size_bytes"),
        "dataset": metrics.get("dataset"),
        "test_accuracy": metrics.get("test_accuracy"),
        "test_f1": metrics.get("test_f1"),
        "test_within_one": metrics.get("test_within_one"),  # labels that are ordered numbers (stars)
        "teacher": metrics.get("teacher"),
        "alpha": metrics.get("alpha"),
        "vocab_size": len(student.tokenizer),
        "max_length": student.config.max_length,
        "labels": student.labels,
    }


# -----------------------------------------------------------------------------
# running the model: one thread per worker, dynamic batching of the requests that wait for it


@dataclass
class Pending:
    """One request waiting for the model: its texts, the future its answer goes to, when it arrived."""

    texts: list[str]
    future: asyncio.Future
    arrived: float  # the event loop's clock


class Predictor:
    """Runs the student on its own thread with dynamic batching: a request that finds the model idle runs at
    once; requests that arrive while a call runs share the next call, up to max_batch texts (a request with
    more runs alone). window_s > 0 lets a request wait up to that long for others to join its call."""

    def __init__(self, student: Student, max_batch: int, window_s: float = 0.0):
        self.student, self.max_batch, self.window_s = student, max_batch, window_s
        self._pool: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[Pending] | None = None
        self._task: asyncio.Task | None = None

    def classify(self, texts: list[str]) -> list[dict]:
        """Label, label id and probabilities per text; a text the student rejects gets an error of its own."""
        try:
            probabilities = self.student.predict_proba(texts)
        except ValueError as err:
            if len(texts) == 1:
                return [{"error": f"no prediction for this text: {err}"}]
            return [row for text in texts for row in self.classify([text])]
        labels, ids = self.student.labels, probabilities.argmax(axis=1).tolist()
        rows = probabilities.astype("float64").round(6).tolist()
        return [
            {"label": labels[i], "label_id": i, "probabilities": dict(zip(labels, row))}
            for i, row in zip(ids, rows)
        ]

    async def start(self) -> None:
        """Start the model thread and the batching task (in the server's event loop)."""
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._batch_loop())

    async def stop(self) -> None:
        """Stop them; start() may run again (a restarted app)."""
        self._task.cancel()
        self._task = self._queue = None
        self._pool.shutdown(wait=False)

    async def predict(self, texts: list[str]) -> list[dict]:
        """classify(texts), in a model call shared with the requests waiting beside it."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put_nowait(Pending(texts, future, loop.time()))
        return await future

    async def _collect(self, first: Pending) -> tuple[list[Pending], Pending | None]:
        """first and the requests queued behind it, up to max_batch texts, waiting for more until first has
        waited window_s; returns them and the request that did not fit (it opens the next call)."""
        loop = asyncio.get_running_loop()
        batch, count, deadline = [first], len(first.texts), first.arrived + self.window_s
        while count < self.max_batch:
            if not self._queue.empty():
                item = self._queue.get_nowait()
            elif loop.time() < deadline:
                try:
                    item = await asyncio.wait_for(self._queue.get(), deadline - loop.time())
                except TimeoutError:
                    break
            else:
                break
            if count + len(item.texts) > self.max_batch:
                return batch, item
            batch.append(item)
            count += len(item.texts)
        return batch, None

    async def _batch_loop(self) -> None:
        """Forever: wait for a request, run it with those queued behind it, and so on."""
        carry = None
        while True:
            first = carry or await self._queue.get()
            batch, carry = await self._collect(first)
            await self._run(batch)

    async def _run(self, batch: list[Pending]) -> None:
        """One model call for the batch; if it fails, one call per request, so only a faulty request fails."""
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(self._pool, self.classify, [t for p in batch for t in p.texts])
        except Exception as err:
            if len(batch) > 1:
                for pending in batch:
                    await self._run([pending])
            elif not batch[0].future.done():
                batch[0].future.set_exception(err)
            return
        start = 0
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(rows[start : start + len(pending.texts)])
            start += len(pending.texts)


# -----------------------------------------------------------------------------
# the app


class PredictRequest(BaseModel):
    """Either "texts" (a list of strings) or "text" (one string)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"texts": ["정말 재밌어요", "시간 아까움"]}]}
    )
    texts: list[StrictStr] | None = Field(default=None, description="texts to classify, answered in order")
    text: StrictStr | None = Field(default=None, description="one text (instead of texts)")

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.texts is None) == (self.text is None):
            raise ValueError('give either "texts" (a list of strings) or "text" (one string), not both')
        if self.texts is not None and not self.texts:
            raise ValueError('"texts" is empty: give at least one text')
        return self


class Prediction(BaseModel):
    index: int = Field(description="position of the text in the request")
    label: str | None = None
    label_id: int | None = None
    probabilities: dict[str, float] | None = Field(default=None, description="label name -> probability")
    error: str | None = Field(default=None, description="why this text got no prediction (others still do)")


class PredictResponse(BaseModel):
    model: str
    predictions: list[Prediction]


class BodyLimit:
    """ASGI middleware: a request body over max_bytes gets a 413 JSON error (declared or streamed)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _error(self) -> HTTPException:
        return HTTPException(
            413,
            f"request body is over the limit of {self.max_bytes:,} bytes; send fewer "
            "or shorter texts per request",
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = self._error()
            return await JSONResponse({"detail": error.detail}, error.status_code)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._error()  # FastAPI turns it into the JSON response
            return message

        return await self.app(scope, limited_receive, send)


def checked_texts(request: PredictRequest, cfg: ServeConfig) -> list[str]:
    """The request's texts; a 422 error naming the limit it breaks or the first text that is not UTF-8."""
    texts = request.texts if request.texts is not None else [request.text]
    if len(texts) > cfg.max_texts:
        raise HTTPException(422, f"{len(texts)} texts in one request; the limit is {cfg.max_texts}: split it")
    for i, text in enumerate(texts):
        where = "text" if request.texts is None else f"texts[{i}]"
        if len(text) > cfg.max_chars:
            raise HTTPException(422, f"{where} has {len(text):,} characters; the limit is {cfg.max_chars:,}")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                problem = f"it holds a lone surrogate at character {err.start}"
                raise HTTPException(422, f"{where} is not valid UTF-8 text: {problem}") from None
    return texts


def create_app(student: Student, cfg: ServeConfig, source: str = "") -> FastAPI:
    """The FastAPI app serving `student` (see the module docstring for the endpoints)."""
    predictor = Predictor(student, cfg.max_batch, cfg.batch_window_ms / 1000)
    info = model_info(student, source)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await predictor.start()
        yield
        await predictor.stop()

    app = FastAPIOffline(  # /docs and /redoc with Swagger UI and ReDoc served from the package, not a CDN
        title="DistilKoBiLSTM", description="Korean sentiment with a tiny distilled BiLSTM", lifespan=lifespan
    )
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE

    @app.get("/health")
    @app.head("/health", include_in_schema=False)  # for probes that send HEAD (uptime checkers, curl -I)
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/model")
    async def model_card() -> dict:
        return info

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True)
    async def predict(request: PredictRequest) -> dict:
        texts = checked_texts(request, cfg)
        try:
            rows = await predictor.predict(texts)
        except Exception as err:  # this request's own failure: the requests batched with it were answered
            log.warning("model call failed: %s", type(err).__name__)  # no message: it may quote the texts
            raise HTTPException(
                500, f"the model failed on this request ({type(err).__name__}); other requests are unaffected"
            ) from None
        return {"model": info["name"], "predictions": [{"index": i, **row} for i, row in enumerate(rows)]}

    return app


def load(cfg: ServeConfig) -> tuple[Student, str]:
    """The student cfg names (or the bundled default) on cfg.backend, and where it came from."""
    source = cfg.student or str(bundled_student())
    return Student.from_pretrained(source, backend=cfg.backend, threads=cfg.threads), source


def app_from_env() -> FastAPI:
    """App factory for worker processes: the ServeConfig comes as JSON in $DISTILKO_SERVE."""
    cfg = ServeConfig(**json.loads(os.environ.get(CONFIG_ENV, "{}")))
    student, source = load(cfg)
    app = create_app(student, cfg, source)
    freeze_loaded_objects()
    return app


def freeze_loaded_objects() -> None:
    """Keep what a server process has loaded (torch, the model: over 250,000 objects) out of the garbage
    collector's full passes, which otherwise stalled every request for up to 300 ms under load. For server
    processes only: a frozen object that later becomes cyclic garbage is never freed."""
    gc.collect()
    gc.freeze()


# -----------------------------------------------------------------------------
# running it: command line, or a background thread in a notebook


class BackgroundServer:
    """A uvicorn server on a daemon thread (see start_in_background)."""

    def __init__(self, app: FastAPI, host: str, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def start_in_background(
    student: str | None = None, port: int = 0, host: str = "127.0.0.1", **settings
) -> BackgroundServer:
    """Serve a student from a thread of this process (a notebook's kernel) and return the running server;
    port 0 takes a free one. settings: other ServeConfig fields (backend, batch_window_ms, ...)."""
    cfg = ServeConfig(student=student, port=port, host=host, **settings)
    loaded, source = load(cfg)
    return BackgroundServer(create_app(loaded, cfg, source), host, port).start()


def show(server: BackgroundServer, height: int = 720) -> str:
    """In Colab, show the page inside the notebook through Colab's port proxy and return the proxy URL;
    elsewhere print and return the local URL."""
    if "google.colab" in sys.modules:
        from google.colab import output  # type: ignore[import-not-found]

        output.serve_kernel_port_as_iframe(server.port, height=height)
        return output.eval_js(f"google.colab.kernel.proxyPort({server.port})")
    print(f"DistilKoBiLSTM demo: {server.url}/  (API docs: {server.url}/docs)")
    return server.url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser, ServeConfig)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = vars(build_parser().parse_args(argv))
    try:
        cfg = ServeConfig(**args)
        student, source = load(cfg)  # several workers too: a missing or broken student fails here
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"serve.py: {one_line(err)}") from None
    if cfg.workers == 1:
        print(f"serving {source} ({cfg.backend}) on http://{cfg.host}:{cfg.port}/", flush=True)
        app = create_app(student, cfg, source)
        freeze_loaded_objects()
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
        return
    del student  # each worker loads its own
    os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(cfg))
    print(
        f"serving {source} ({cfg.backend}) with {cfg.workers} workers on http://{cfg.host}:{cfg.port}/",
        flush=True,
    )
    # workers answer the supervisor's health checks only once torch & co. are imported (slow when busy)
    uvicorn.run(
        "serve:app_from_env",
        factory=True,
        host=cfg.host,
        port=cfg.port,
        workers=cfg.workers,
        app_dir=str(ROOT),
        timeout_worker_healthcheck=WORKER_START_TIMEOUT_S,
        log_level=cfg.log_level,
    )


PAGE = """<!doctype html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>DistilKoBiLSTM 감성 분석</title>
<style>
body { font-family: "NanumGothic", "Noto Sans CJK KR", "Malgun Gothic", sans-serif; max-width: 760px;
       margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } .en { color: #777; font-size: 0.85em; }
textarea { width: 100%; box-sizing: border-box; font-size: 1em; padding: 0.5em; }
button { font-size: 1em; padding: 0.4em 1em; margin: 0.3em 0.3em 0.3em 0; cursor: pointer; }
.examples button { font-size: 0.85em; background: #f3f3f3; border: 1px solid #ccc; border-radius: 1em; }
#results { list-style: none; padding: 0; }
.result { border-bottom: 1px solid #eee; padding: 0.6em 0; }
.result .text { display: block; margin-bottom: 0.3em; }
.label { font-weight: bold; display: inline-block; width: 9em; }
.positive { color: #1a7f37; } .negative { color: #c62828; }
.bar { display: inline-block; width: 50%; height: 0.8em; background: #eee; vertical-align: middle; }
.bar div { height: 100%; background: #5b8def; }
.bar .positive { background: #2da44e; } .bar .negative { background: #e57373; }
.classes { display: block; color: #555; font-size: 0.85em; margin-top: 0.2em; }
.prob { display: inline-block; width: 4.5em; text-align: right; font-variant-numeric: tabular-nums; }
.error { color: #c62828; }
table { border-collapse: collapse; font-size: 0.9em; } td { padding: 0.15em 0.8em 0.15em 0; }
</style>
</head>
<body>
<h1>한국어 감성 분석 <span class="en">Korean sentiment analysis</span></h1>
<p>한 줄에 한 문장씩 입력하세요. <span class="en">One sentence per line.</span></p>
<form id="form">
<textarea id="input" rows="4" placeholder="예: 정말 재밌어요"></textarea><br>
<button type="submit" id="submit">분석하기 <span class="en">Analyze</span></button>
</form>
<div class="examples">예시 <span class="en">examples</span>:
<button type="button">정말 재밌어요. 배우들 연기 최고!</button>
<button type="button">시간 아까움. 스토리가 엉망이다</button>
<button type="button">기대 안 했는데 생각보다 괜찮네요</button>
<button type="button">돈 주고 보기엔 너무 지루했어요</button>
</div>
<p id="status" class="error"></p>
<ul id="results"></ul>
<h2>모델 <span class="en">model card</span></h2>
<table id="card"></table>
<p class="en">API: <a href="/docs">/docs</a> · POST /predict {"texts": [...]} · GET /model · GET /health</p>
<script>
const KOREAN = {positive: "긍정", negative: "부정"};
const input = document.getElementById("input"), results = document.getElementById("results");
const status = document.getElementById("status");
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function show(texts, predictions) {
  results.replaceChildren();
  predictions.forEach((p) => {
    const li = el("li", "result");
    li.append(el("span", "text", texts[p.index]));
    if (p.error) { li.append(el("span", "error", p.error)); results.append(li); return; }
    const prob = p.probabilities[p.label];
    li.append(el("span", "label " + p.label, KOREAN[p.label] ? KOREAN[p.label] + " " + p.label : p.label));
    const bar = el("span", "bar"), fill = el("div", p.label);
    fill.style.width = (100 * prob).toFixed(1) + "%";
    bar.append(fill);
    li.append(bar, el("span", "prob", (100 * prob).toFixed(1) + "%"));
    // every class's probability, in the model's label order
    const all = Object.entries(p.probabilities).map(([name, q]) => name + " " + (100 * q).toFixed(1) + "%");
    li.append(el("span", "classes", all.join(" · ")));
    results.append(li);
  });
}
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const texts = input.value.split("\\n").map((t) => t.trim()).filter((t) => t);
  status.textContent = "";
  if (!texts.length) { status.textContent = "문장을 입력하세요 (enter a sentence)"; return; }
  try {
    const response = await fetch("/predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify({texts})});
    const data = await response.json();
    if (!response.ok) {
      status.textContent = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      return;
    }
    show(texts, data.predictions);
  } catch (err) { status.textContent = "요청 실패 (request failed): " + err; }
});
document.querySelectorAll(".examples button").forEach((b) => b.addEventListener("click", () => {
  input.value = b.textContent;
  document.getElementById("submit").click();
}));
fetch("/model").then((r) => r.json()).then((m) => {
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(2) + " %");
  const rows = [["실행 run", m.name],
                ["크기 size", m.size + ", " + m.params.toLocaleString() + " parameters" +
                 (m.size_bytes ? ", " + (m.size_bytes / 1e6).toFixed(2) + " MB" : "")],
                ["테스트 정확도 test accuracy",
                 pct(m.test_accuracy) + (m.dataset ? " (" + m.dataset + ")" : "") +
                 (m.test_within_one != null ? ", within one class " + pct(m.test_within_one) : "")],
                ["레이블 labels", m.labels.join(" / ")],
                ["교사 teacher", m.teacher || "없음 (none)"], ["백엔드 backend", m.backend]];
  const card = document.getElementById("card");
  rows.forEach(([k, v]) => {
    const tr = el("tr");
    tr.append(el("td", "", k), el("td", "", v));
    card.append(tr);
  });
});
</script>
</body>
</html>
"""

if __name__ == "__main__":
    main(sys.argv[1:])
