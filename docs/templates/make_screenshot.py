"""How docs/templates/contact-sheet.png was made: a fresh server, the example template imported
twice (v1, then a warmer v2), an evaluation of v2 against v1 on its catalogue set, and the
contact sheet page captured by headless Chromium.

    .venv/bin/python docs/templates/make_screenshot.py   (needs /usr/bin/chromium)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from pixelmill.testing import Server

HERE = Path(__file__).resolve().parent
KEY = "pm_docs_" + "d" * 32


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", KEY).start()
        try:
            auth = ["--url", server.url, "--api-key", KEY]
            yaml_path = Path(tmp) / "product-shot.yaml"
            source = (HERE / "product-shot.yaml").read_text()
            yaml_path.write_text(source)
            server.cli("templates", "import", str(yaml_path), "--publish", "--release", "stable", *auth)
            yaml_path.write_text(source.replace("product photography", "product photography, warm golden grade, soft shadows")
                                 .replace("First cut of the catalogue look.", "Warmer grade."))
            server.cli("templates", "import", str(yaml_path), "--publish", *auth)
            out = server.cli("templates", "eval", "product-shot", "--set", "catalogue", "--baseline", "1", "--candidate", "2",
                             "--seed", "7", *auth).stdout
            print(out)
            url = out.strip().rsplit(" ", 1)[-1]
            shot = HERE / "contact-sheet.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--screenshot={shot}", "--window-size=1200,1500", "--virtual-time-budget=5000", url],
                           check=True, capture_output=True, timeout=120)
            print(f"wrote {shot}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
