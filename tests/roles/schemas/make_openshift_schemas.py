"""Extract the OpenShift kinds the deploy role renders from the OpenShift OpenAPI document.

Usage: python tests/roles/schemas/make_openshift_schemas.py [path/to/openshift-openapi.json]
(default: ../shared/schemas/openshift-openapi.json beside the checkout). Writes openshift-kinds.json next to this
script: the definitions of Route, OAuthClient, BuildConfig and ImageStream plus every definition they reference,
unchanged, so the tests do not need the big document at run time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2].parent / "shared" / "schemas" / "openshift-openapi.json"
ROOTS = {
    "Route": "com.github.openshift.api.route.v1.Route",
    "OAuthClient": "com.github.openshift.api.oauth.v1.OAuthClient",
    "BuildConfig": "com.github.openshift.api.build.v1.BuildConfig",
    "ImageStream": "com.github.openshift.api.image.v1.ImageStream",
}
PREFIX = "#/definitions/"


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(PREFIX):
                yield value[len(PREFIX):]
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def extract(document: dict) -> dict:
    definitions = document["definitions"]
    wanted, todo = {}, list(ROOTS.values())
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted[name] = definitions[name]
        todo.extend(refs(definitions[name]))
    return {
        "source": "openshift/api generated OpenAPI (swagger 2.0), commit 2a3d73913b5a; Apache-2.0",
        "roots": ROOTS,
        "definitions": dict(sorted(wanted.items())),
    }


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    out = HERE / "openshift-kinds.json"
    out.write_text(json.dumps(extract(json.loads(source.read_text())), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
