"""How hardmine's checks drive a browser: Debian's Chromium, headless and offline.

Playwright's own browser download fails without internet, so the browser test and
`scripts/check_dashboard.py` launch the system Chromium with these flags. The networking flags
keep it from calling home (refused on a closed network, many times a start).
"""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
