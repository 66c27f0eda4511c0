"""Screenshot of TensorBoard's learning curves in a real headless browser (Debian's chromium).

    python tools/tensorboard_screenshot.py --logdir runs --out results/tensorboard_scalars.png

Starts TensorBoard on a free local port over --logdir, opens its Time Series dashboard in headless chromium
(Playwright driving the system's /usr/bin/chromium: no browser download), keeps the cards whose tag matches
--tags (default: the train and valid curves), waits for the charts and saves a PNG. Prints the tags it showed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logdir: str | Path, timeout: float = 120) -> Iterator[str]:
    """A TensorBoard server over logdir, for the duration of the block; yields its URL once it lists runs."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--reload_interval",
        "1",
    ]
    url = f"http://127.0.0.1:{port}/"
    # the server's output goes to a file, not a pipe: a chatty server must never block on a full one
    with (
        tempfile.TemporaryFile("w+") as log,
        subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT) as server,
    ):
        try:
            deadline = time.monotonic() + timeout
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(
                        f"tensorboard exited with code {server.returncode}: {log.read()[-2000:]}"
                    )
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(url + "data/runs", timeout=5) as response,
                ):
                    if json.load(response):
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"tensorboard found no runs under {logdir} within {timeout:.0f}s")
                time.sleep(1)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def scalar_tags(url: str, pattern: str) -> list[str]:
    """The scalar tags TensorBoard at url serves (any run) that match the regex pattern."""
    with urllib.request.urlopen(url + "data/plugin/scalars/tags", timeout=30) as response:
        runs = json.load(response)
    return sorted({tag for tags in runs.values() for tag in tags if re.search(pattern, tag)})


def screenshot(
    url: str,
    out: str | Path,
    tags: str = "train/(loss|kd)|valid/(accuracy|loss)",
    size: tuple[int, int] = (1280, 1060),
    browser: str = CHROMIUM,
) -> list[str]:
    """Save a PNG of the Time Series dashboard at url showing the scalar cards whose tag matches the regex
    ``tags``; returns those tags (each was found on the page before the screenshot)."""
    from playwright.sync_api import sync_playwright

    shown = scalar_tags(url, tags)
    if not shown:
        raise ValueError(f"no scalar tag matches {tags!r} at {url}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=browser, headless=True, args=["--no-sandbox"])
        try:
            page = chromium.new_page(viewport={"width": size[0], "height": size[1]})
            page.goto(url + "#timeseries", wait_until="networkidle")
            settings = page.locator("button", has_text="Settings").first  # its pane opens on wide screens
            if (
                settings.get_attribute("aria-pressed") == "true"
                or page.get_by_text("Horizontal Axis").is_visible()
            ):
                settings.click()
            page.locator("input[placeholder^='Filter tags']").first.fill(tags)
            page.keyboard.press("Escape")  # closes the tag suggestions
            for tag in shown:
                page.get_by_text(tag, exact=True).first.wait_for(timeout=60_000)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2000)  # the charts draw after their data arrives
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            chromium.close()
    shrink_png(out)
    return shown


def screenshot_hparams(
    url: str, out: str | Path, size: tuple[int, int] = (3400, 360), browser: str = CHROMIUM
) -> None:
    """Save a PNG of the HParams dashboard's table (one row per run: its hyperparameters and metrics)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=browser, headless=True, args=["--no-sandbox"])
        try:
            page = chromium.new_page(viewport={"width": size[0], "height": size[1]})
            page.goto(url + "#hparams", wait_until="networkidle")
            page.get_by_text("Trial ID").first.wait_for(timeout=60_000)
            # TensorBoard shows only the first few hyperparameters and no metric: tick every column in the
            # list on the left (not the table rows' "Show Metrics" boxes)
            for box in page.get_by_role("checkbox").all():
                where = box.bounding_box() if box.is_visible() else None
                if where and where["x"] < size[0] / 4 and box.get_attribute("aria-checked") == "false":
                    box.click()
            page.mouse.move(size[0] - 1, size[1] - 1)  # no tooltip over the table
            page.wait_for_timeout(1000)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            chromium.close()
    shrink_png(out)


def shrink_png(path: str | Path, colors: int = 64) -> None:
    """Rewrite a screenshot with a palette of a few colours: a third of the size, charts look the same."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logdir", default="runs", help="TensorBoard's log root (default: %(default)s)")
    parser.add_argument(
        "--out", default="results/tensorboard_scalars.png", help="the PNG (default: %(default)s)"
    )
    parser.add_argument(
        "--tags",
        default="train/(loss|kd)|valid/(accuracy|loss)",
        help="regex of the tags to show (default: %(default)s)",
    )
    parser.add_argument("--browser", default=CHROMIUM, help="chromium executable (default: %(default)s)")
    parser.add_argument("--hparams", help="also save the HParams table view as this PNG")
    args = parser.parse_args(argv)
    if not Path(args.browser).is_file():
        raise SystemExit(
            f"{args.browser} not found: install chromium (apt-get install chromium) or pass --browser"
        )
    with tensorboard(args.logdir) as url:
        titles = screenshot(url, args.out, args.tags, browser=args.browser)
        if args.hparams:
            screenshot_hparams(url, args.hparams, browser=args.browser)
    print(f"wrote {args.out}: {len(titles)} cards ({', '.join(titles)})")
    return titles


if __name__ == "__main__":
    main(sys.argv[1:])
