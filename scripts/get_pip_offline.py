"""Stand-in for the pip bootstrap script ansible-test downloads from a host we cannot reach.

ansible-test runs it inside each fresh sanity virtualenv as ``python get_pip.py [options] pip==X [setuptools] [wheel]``.
We bootstrap pip from the interpreter's bundled wheel (ensurepip), then let that pip install the requested
packages from the package index. Options only the original script knows are dropped.
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    return subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *args])


if __name__ == "__main__":
    sys.exit(main())
