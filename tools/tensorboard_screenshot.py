"""Screenshots of TensorBoard as a new user first sees it, in a real headless browser (Debian's chromium).

    python tools/tensorboard_screenshot.py --logdir runs --out results/tensorboard_scalars.png \
        --hparams results/tensorboard_hparams.png

Starts TensorBoard on a free local port over --logdir and opens it in headless chromium (Playwright driving
the system's /usr/bin/chromium: no browser download) in a 1400x900 window with TensorBoard's defaults: no tag
filter, no column ticked, no pane closed. Saves the first screen of the Time Series dashboard (and, with
--hparams, of the HParams table) as a PNG and prints the cards and columns that screen shows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import typing
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
SIZE = (1400, 900)  # a laptop's browser window
# The scalar cards of each dashboard: the element, and its tag (JavaScript of the element e).
CARDS = {"timeseries": ("card-view tb-truncated-path.tag", "e.title"), "scalars": ("tf-scalar-card", "e.tag")}
# The texts of the table's cells (JavaScript) that sit under its "Trial ID" header.
TRIAL_IDS = """(cells) => {
    const left = (e) => Math.round(e.getBoundingClientRect().left);
    const header = cells.find((e) => e.textContent.trim() === "Trial ID");
    return cells.filter((e) => e !== header && left(e) === left(header)).map((e) => e.textContent.trim());
}"""


class HParamsTable(typing.NamedTuple):
    """What the HParams dashboard's table shows: the column headers inside the window, and every row's trial
    ID (the cell's full text; TensorBoard cuts it to its 10em column on screen)."""

    columns: list[str]
    trials: list[str]


def free_port() -> int:
    """A free local TCP port."""
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


@contextlib.contextmanager
def browser_page(size: tuple[int, int] = SIZE, browser: str = CHROMIUM) -> Iterator[typing.Any]:
    """A Playwright page in headless chromium with a window of ``size`` (width, height)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=browser, headless=True, args=["--no-sandbox"])
        try:
            yield chromium.new_page(viewport={"width": size[0], "height": size[1]})
        finally:
            chromium.close()


def screenshot(
    url: str,
    out: str | Path,
    dashboard: str = "timeseries",
    size: tuple[int, int] = SIZE,
    browser: str = CHROMIUM,
) -> list[str]:
    """Save a PNG of the first screen of a scalar dashboard (``timeseries`` or ``scalars``) at url, as it
    opens; returns the tags of the cards inside the window, in page order."""
    selector, tag = CARDS[dashboard]
    with browser_page(size, browser) as page:
        page.goto(f"{url}#{dashboard}", wait_until="networkidle")
        page.locator(selector).first.wait_for(timeout=60_000)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(2000)  # the charts draw after their data arrives
        cards = inside(page.locator(selector), tag, size)
        save(page, out)
    return cards


def screenshot_hparams(
    url: str, out: str | Path, size: tuple[int, int] = SIZE, browser: str = CHROMIUM
) -> HParamsTable:
    """Save a PNG of the HParams dashboard as it opens (the table view, one row per run); returns the
    columns inside the window and the rows' trial IDs."""
    with browser_page(size, browser) as page:
        page.goto(f"{url}#hparams", wait_until="networkidle")
        table = page.locator("tf-hparams-table-view")
        rows = table.locator("paper-checkbox.table-cell").filter(visible=True)  # each row's "Show Metrics"
        rows.first.wait_for(timeout=60_000)
        page.wait_for_load_state("networkidle")
        page.mouse.move(size[0] - 1, size[1] - 1)  # no tooltip over the table
        page.wait_for_timeout(1000)
        columns = inside(table.locator(".table-header"), "e.textContent.trim()", size)
        trials = table.locator(".table-cell").evaluate_all(TRIAL_IDS)
        save(page, out)
    return HParamsTable(columns, trials)


def inside(elements: typing.Any, value: str, size: tuple[int, int]) -> list:
    """``value`` (JavaScript of the element e) of each of the located elements inside the window, in page
    order (a collapsed group's cards have no size; a column scrolled off to the right is outside)."""
    return elements.evaluate_all(
        f"""(elements, [width, height]) => elements.filter((e) => {{
            const box = e.getBoundingClientRect();
            return box.height > 0 && box.top >= 0 && box.top < height && box.left >= 0 && box.right <= width;
        }}).map((e) => {value})""",
        list(size),
    )


def save(page: typing.Any, out: str | Path) -> None:
    """Save the page's window as a small PNG."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    shrink_png(out)


def shrink_png(path: str | Path, colors: int = 64) -> None:
    """Rewrite a screenshot with a palette of a few colours: a third of the size, charts look the same."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> tuple[list[str], HParamsTable | None]:
    """The command line: the screenshots, and what their first screens show."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logdir", default="runs", help="TensorBoard's log root (default: %(default)s)")
    parser.add_argument(
        "--out", default="results/tensorboard_scalars.png", help="the Time Series PNG (default: %(default)s)"
    )
    parser.add_argument("--hparams", help="also save the HParams table as this PNG")
    parser.add_argument("--browser", default=CHROMIUM, help="chromium executable (default: %(default)s)")
    args = parser.parse_args(argv)
    if not Path(args.browser).is_file():
        raise SystemExit(
            f"{args.browser} not found: install chromium (apt-get install chromium) or pass --browser"
        )
    with tensorboard(args.logdir) as url:
        cards = screenshot(url, args.out, browser=args.browser)
        table = screenshot_hparams(url, args.hparams, browser=args.browser) if args.hparams else None
    print(f"wrote {args.out}: the first screen shows {', '.join(cards)}")
    if table:
        print(f"wrote {args.hparams}: columns {', '.join(table.columns)}; trials {', '.join(table.trials)}")
    return cards, table


if __name__ == "__main__":
    main(sys.argv[1:])
