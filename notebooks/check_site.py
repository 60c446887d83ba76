"""Check, in headless Chromium, that the built documentation site renders its equations (CI runs it after
``mkdocs build --strict``).

    python3 notebooks/check_site.py                                   # site/, the notebook pages and teaching
    python3 notebooks/check_site.py --screenshot docs/images/equations.png

Serves ``site/`` on a free local port, loads each page with Chromium (``--dump-dom`` after a virtual-time budget
that lets MathJax finish), and requires MathJax output (``mjx-container`` elements), no MathJax error, and no raw
``$``, ``\\(`` or ``\\[`` left in the text of notebook markdown cells or arithmatex spans. Exit status 1 when a page
fails; 0 with a note when Chromium is not installed (the check is then skipped).
"""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from run_all import all_notebooks

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["teaching/", "lectures/"] + [f"notebooks/{p.stem}/" for p in all_notebooks()]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--run-all-compositor-stages-before-draw", "--virtual-time-budget=15000"]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no line per request
        pass


def chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def browse(browser: str, url: str, *extra: str) -> str:
    """Chromium's output (the DOM with ``--dump-dom``) for ``url``, in a fresh profile."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=180)
    return done.stdout


def problems(dom: str) -> tuple[int, list[str]]:
    """(number of rendered equations, what is wrong) of a page's DOM."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(dom, "html.parser")
    rendered = soup.find_all("mjx-container")
    wrong = [f"MathJax error: {e.get('data-mjx-error') or e.get_text()[:80]}" for e in soup.find_all("mjx-merror")]
    for element in rendered:
        element.decompose()
    for element in soup.select(".jp-RenderedMarkdown, .arithmatex"):
        text = element.get_text(" ", strip=True)
        if any(d in text for d in ("$", "\\(", "\\[")):
            wrong.append(f"raw delimiters left: {text[:100]!r}")
    if not rendered:
        wrong.append("no equation rendered (no mjx-container)")
    return len(rendered), wrong


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check that the built site renders its equations.")
    parser.add_argument("--site", type=Path, default=ROOT / "site")
    parser.add_argument("--pages", nargs="*", default=PAGES, help="pages relative to the site root")
    parser.add_argument("--screenshot", type=Path, help="also save a 1200x900 screenshot of notebook 4 here")
    args = parser.parse_args(argv)
    browser = chromium()
    if browser is None:
        print("check_site: Chromium is not installed; equation rendering not checked")
        return 0
    if not (args.site / "index.html").exists():
        print(f"check_site: {args.site} holds no built site; run mkdocs build first")
        return 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(args.site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    failed = 0
    try:
        for page in args.pages:
            count, wrong = problems(browse(browser, base + page, "--dump-dom"))
            failed += bool(wrong)
            print(f"{'ok    ' if not wrong else 'FAILED'} {page:<36} {count:4} equations rendered"
                  + "".join(f"\n       {w}" for w in wrong[:5]))
        if args.screenshot:
            browse(browser, base + "notebooks/04_lstm_gru/", f"--screenshot={args.screenshot.resolve()}",
                   "--window-size=1200,900")
            print(f"screenshot: {args.screenshot}")
    finally:
        server.shutdown()
    print(f"{len(args.pages) - failed} pages rendered their equations, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
