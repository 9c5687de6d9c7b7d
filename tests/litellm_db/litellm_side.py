"""Run by LiteLLM 1.81's own Python (not the suite's): seals and opens values with LiteLLM's helpers and validates
database rows with LiteLLM's pydantic types, so the tests check the proxy against LiteLLM's code itself.

stdin:  {"salt_key": "...", "seal": ["plain", ...], "open": ["sealed", ...], "rows": {"LiteLLM_VerificationToken": [{...}], ...}}
stdout: {"sealed": [...], "opened": [... or null], "invalid": {"<type>": ["<row index>: <error>", ...]}}
"""

import json
import os
import sys
import types

request = json.load(sys.stdin)
os.environ["LITELLM_SALT_KEY"] = request["salt_key"]
# LiteLLM's decrypt helper imports the master key from its proxy server module, which needs litellm[proxy]; with
# LITELLM_SALT_KEY set that value is never used, so a stand-in module saves installing the proxy's dependencies.
sys.modules.setdefault("litellm.proxy.proxy_server", types.SimpleNamespace(master_key=None))

from litellm.proxy import _types  # noqa: E402
from litellm.proxy.common_utils.encrypt_decrypt_utils import decrypt_value_helper, encrypt_value_helper  # noqa: E402

out = {"sealed": [encrypt_value_helper(v) for v in request.get("seal", [])],
       "opened": [decrypt_value_helper(v, key="test", exception_type="debug") for v in request.get("open", [])],
       "invalid": {}}
for type_name, rows in request.get("rows", {}).items():
    model = getattr(_types, type_name)
    # Fields typed ``Json`` take the JSON text LiteLLM writes to the column (as for the spend log's metadata).
    as_text = [name for name, field in model.model_fields.items() if "Json" in repr(field.annotation)]
    errors = []
    for i, row in enumerate(rows):
        row = {k: json.dumps(v) if k in as_text and v is not None and not isinstance(v, str) else v for k, v in row.items()}
        try:
            model(**row)
        except Exception as exc:  # pydantic's ValidationError, reported whole
            errors.append(f"{i}: {exc}")
    out["invalid"][type_name] = errors
json.dump(out, sys.stdout)
