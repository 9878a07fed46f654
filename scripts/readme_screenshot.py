"""The README's picture: a side-by-side view of the shipped NLA on the embedded model, as a PNG.

    python scripts/readme_screenshot.py [--out docs/_static/side_by_side.png]

Explains a short prompt with the shipped NLA beside its attention (circuitsvis), saves the view as
one self-contained HTML page, and photographs it with Debian's Chromium through Playwright (the
browser the real-browser test drives; no download). Offline, about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import nla_lens
from nla_lens import NLA
from nla_lens.analysis import side_by_side

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The old sailor tied the rope to the mast"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "_static" / "side_by_side.png")
    parser.add_argument("--positions", type=int, nargs="+", default=[2, 4, 6, 8])
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Needs Debian's chromium: apt-get install -y chromium")
    subject = nla_lens.load_subject("smollm2-135m")
    nla = NLA.from_pretrained()
    view = side_by_side(nla, subject, PROMPT, positions=args.positions, heads=[0, 1, 2, 3], progress=False, warn=False)
    with tempfile.TemporaryDirectory() as folder:
        page_path = view.save(Path(folder) / "view.html")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": 1100, "height": 640}, device_scale_factor=1)
            page.goto(page_path.resolve().as_uri())
            page.wait_for_timeout(1500)  # circuitsvis draws after load
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=False)  # the viewport: tokens, table, heads
            browser.close()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
