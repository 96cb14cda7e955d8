"""Open a `tfrec-dyn report` page in a real browser: Debian's headless Chromium, driven by Playwright.

    .venv/bin/python tools/browse_report.py runs/sasrec/report.html --screenshot docs/report.png

Prints (and `browse` returns) the page's script errors, every request that
left the file (a CDN would show here), and each plot's drawn size.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, Optional

CHROMIUM = "/usr/bin/chromium"
# As root, without a sandbox; no background connections (the machine has no network to give them).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PLOTS_SCRIPT = """() => [...document.querySelectorAll('figure.plot')].map(figure => {
    const svg = figure.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {name: figure.dataset.plot, width: box.width, height: box.height,
            marks: svg ? svg.querySelectorAll('path, rect, use, image').length : 0};
})"""


def browse(path: str, screenshot: Optional[str] = None, width: int = 1200) -> Dict:
    """{"errors": script errors and console errors, "requests": URLs other
    than the file itself, "scripts": how many <script> elements the page has,
    "plots": [{name, width, height, marks}]}."""
    from playwright.sync_api import sync_playwright

    url = "file://" + os.path.abspath(path)
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("pageerror", lambda error: errors.append(f"script error: {error}"))
            page.on("console", lambda message: errors.append(f"console: {message.text}")
                    if message.type == "error" else None)
            page.on("request", lambda request: requests.append(request.url) if request.url != url else None)
            page.goto(url, wait_until="load")
            plots = page.evaluate(PLOTS_SCRIPT)
            scripts = page.evaluate("() => document.scripts.length")
            if screenshot:
                page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    return {"errors": errors, "requests": requests, "scripts": scripts, "plots": plots}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report")
    parser.add_argument("--screenshot", help="PNG of the whole page")
    args = parser.parse_args(argv)
    seen = browse(args.report, args.screenshot)
    print(json.dumps(seen, indent=2))
    return 1 if seen["errors"] or seen["requests"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
