"""Make the proxy package (files/proxy) importable for the tools' tests."""

import sys
from pathlib import Path

PROXY_SRC = Path(__file__).resolve().parents[3] / "files" / "proxy"
if str(PROXY_SRC) not in sys.path:
    sys.path.insert(0, str(PROXY_SRC))
