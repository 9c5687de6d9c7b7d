"""Check rendered Kubernetes objects against the schema of the API server that would serve each kind.

One entry point for every render test (deploy role, monitoring role, day-2 playbooks):

    from tests.support import k8s_schemas
    k8s_schemas.assert_valid(render_dir)            # a directory: every *.yaml / *.yml file under it
    k8s_schemas.assert_valid(objects, minimum=20)   # dicts (a "__file__" key names the file) or (file, dict) pairs

``assert_valid`` raises :class:`SchemaViolation` (an AssertionError) listing every problem as
``file: Kind/name: json.path: message [validator]`` and returns a :class:`Report`; ``check`` returns the report
without raising. Which schema checks an object:

- **CustomResourceDefinition** (``../shared/crds/`` and ``extras/``): the ``openAPIV3Schema`` of the served
  version, made structural the way the apiextensions server treats it: null values of non-nullable fields are
  dropped and ``default`` values are applied before validation; unknown fields are errors unless
  ``x-kubernetes-preserve-unknown-fields``; ``x-kubernetes-int-or-string`` accepts an integer or a string;
  ``x-kubernetes-embedded-resource`` objects need ``apiVersion``/``kind`` and get ObjectMeta checks;
  ``x-kubernetes-list-type: set|map`` items must be unique (by ``x-kubernetes-list-map-keys``); the object's own
  ``metadata`` is checked as ObjectMeta. ``x-kubernetes-validations`` (CEL) rules are evaluated with cel-python
  (``celpy``) when it is installed (:data:`CEL_AVAILABLE`); transition rules (``oldSelf``) only run on update
  and are not evaluated. ``format`` is not checked.
- **OpenShift aggregated APIs** (group ``*.openshift.io`` found in ``../shared/schemas/openshift-openapi.json``,
  e.g. OAuthClient, BuildConfig, ImageStream, Route): that swagger definition, unknown fields are errors.
  Route also has an upstream CRD, so a Route is checked by both.
- **Built-in Kubernetes kinds** (core group, ``apps``, ``batch``, ``*.k8s.io`` ...): kubernetes-validate's strict
  schemas for :data:`K8S_VERSION`.
- Every object: ``metadata.name`` (DNS subdomain; DNS label for Namespace and Service) and label syntax.

An object whose apiVersion/kind no schema knows is a problem, not a pass. A missing ``shared/`` folder raises
:class:`SchemaUnavailable`. Files rendered as server-side-apply patches (e.g. scale's replica patches) are
checked with ``patches=[glob, ...]``: types and unknown fields count, ``required`` and CEL rules do not (the
API server checks those on the merged object).

Everything parsed (CRDs, the 3 MB OpenShift document, kubernetes-validate's definitions) is cached per process,
and a CRD file is parsed only when an object of its kind is checked.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate import utils as kv_utils
from packaging.version import Version
from referencing import Registry, Resource

try:  # CEL: optional at import time, so that a missing package is reported by a test instead of an ImportError
    import celpy
    from celpy import celtypes

    CEL_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    celpy = celtypes = None
    CEL_AVAILABLE = False
try:  # Go's regexp syntax (RE2), which the API server uses for "pattern"; installed with cel-python
    import re2
except ImportError:  # pragma: no cover - depends on the environment
    re2 = None

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33"  # OpenShift 4.20
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


class SchemaUnavailable(RuntimeError):
    """The schema files are not where they must be (a test failure, never a skip)."""


@dataclass(frozen=True)
class Problem:
    file: str
    kind: str
    name: str
    path: str
    message: str
    validator: str

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}/{self.name}: {self.path}: {self.message} [{self.validator}]"


@dataclass
class Report:
    checked: list = field(default_factory=list)  # (file, kind, name, [validator names])
    problems: list = field(default_factory=list)

    def validators_of(self, kind: str) -> set:
        return {v for _f, k, _n, names in self.checked if k == kind for v in names}


class SchemaViolation(AssertionError):
    def __init__(self, problems: list):
        self.problems = problems
        lines = [str(p) for p in problems[:40]]
        if len(problems) > 40:
            lines.append(f"... and {len(problems) - 40} more")
        super().__init__(f"{len(problems)} schema problem(s):\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------------------------------------
# Where the schemas are


def shared_dir() -> Path:
    """``shared/`` beside the checkout (CI) or beside a parent folder of it (a worktree); LITEMAAS_SHARED_DIR wins."""
    override = os.environ.get("LITEMAAS_SHARED_DIR")
    candidates = [Path(override)] if override else [parent / "shared" for parent in REPO.parents]
    for candidate in candidates:
        if (candidate / "crds").is_dir() and (candidate / "schemas" / "openshift-openapi.json").is_file():
            return candidate
    raise SchemaUnavailable(f"no shared/crds and shared/schemas/openshift-openapi.json in {', '.join(map(str, candidates))}"
                            " (set LITEMAAS_SHARED_DIR)")


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _version_of(api_version: str) -> str:
    return api_version.rpartition("/")[2]


def _is_kubernetes_group(group: str) -> bool:
    return group == "" or "." not in group or group.endswith(".k8s.io")


def _json_path(parts: Iterable) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if re.fullmatch(r"[A-Za-z_$][\w$-]*", str(part)) else f"[{json.dumps(part)}]")
    return out.lstrip(".") or "(root)"


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + "..."


def _without_nulls(value):
    """``value`` with every null dropped, as "not set". In an object, that is what a Go API server decodes (a JSON
    null is the field's zero value); in a schema, a keyword with a null value (the Route CRD has ``anyOf: null``)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


# --------------------------------------------------------------------------------------------------------------------
# OpenShift aggregated APIs (swagger 2.0 definitions)


def _strict_swagger(node):
    # Unknown fields are errors (the swagger document does not say so itself).
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict_swagger(value)
    elif isinstance(node, list):
        for value in node:
            _strict_swagger(value)


@functools.lru_cache(maxsize=1)
def _openshift() -> tuple:
    document = json.loads((shared_dir() / "schemas" / "openshift-openapi.json").read_text())
    definitions = _without_nulls(document["definitions"])
    # IntOrString is declared as a string with format int-or-string: the API server takes both.
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["integer", "string"]}
    _strict_swagger(definitions)
    # The document carries no x-kubernetes-group-version-kind: com.github.openshift.api.<g>.<version>.<Kind> is the
    # kind <Kind> of the group <g>.openshift.io when it has apiVersion, kind and metadata.
    index = {}
    for name, definition in definitions.items():
        match = re.fullmatch(r"com\.github\.openshift\.api\.(\w+)\.(v\w+)\.(\w+)", name)
        if match and {"apiVersion", "kind", "metadata"} <= set(definition.get("properties") or {}):
            index[(f"{match.group(1)}.openshift.io", match.group(2), match.group(3))] = name
    return definitions, index


def _definitions_closure(root: str) -> dict:
    definitions = _openshift()[0]
    wanted, todo = {}, [root]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted[name] = definitions[name]
            todo.extend(_refs(definitions[name]))
    return wanted


@functools.cache
def _openshift_validator(definition: str):
    schema = {"definitions": _definitions_closure(definition), "$ref": f"#/definitions/{definition}"}
    return jsonschema.Draft4Validator(schema)


def openshift_definition(api_version: str, kind: str) -> str | None:
    group = _group_of(api_version)
    if _is_kubernetes_group(group):
        return None
    return _openshift()[1].get((group, _version_of(api_version), kind))


# --------------------------------------------------------------------------------------------------------------------
# Built-in Kubernetes kinds (kubernetes-validate's strict schemas)


@functools.lru_cache(maxsize=1)
def _kubernetes_schema_dir() -> str:
    wanted = Version(K8S_VERSION)
    version = [v for v in kv_utils.all_versions() if Version(kv_utils.major_minor(v)) <= wanted][-1]
    return f"v{version}-local-strict"


@functools.lru_cache(maxsize=1)
def _kubernetes_registry() -> Registry:
    schema_dir = _kubernetes_schema_dir()
    definitions = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", K8S_VERSION)
    return Resource.from_contents(definitions) @ Registry()


@functools.cache
def _kubernetes_validator(api_version: str, kind: str):
    # The same file kubernetes_validate.validate() picks (rbac.authorization.k8s.io/v1 -> rbac-v1), loaded once.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(f"kubernetes-json-schema/{_kubernetes_schema_dir()}/{kind.lower()}-{api}.json", K8S_VERSION)
    except FileNotFoundError:
        return None
    registry = Resource.from_contents(schema) @ _kubernetes_registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


# --------------------------------------------------------------------------------------------------------------------
# CustomResourceDefinitions


_CRD_GROUP = re.compile(r"^  group: *['\"]?([^'\"\s]+)", re.M)
_CRD_NAMES = re.compile(r"^  names:\n((?:(?:    .*)?\n)+)", re.M)
_CRD_KIND = re.compile(r"^    kind: *['\"]?(\w+)", re.M)


@functools.lru_cache(maxsize=1)
def crd_index() -> dict:
    """{(group, kind): CRD file} for every CRD under shared/crds, read without parsing the (large) files."""
    index = {}
    for path in sorted((shared_dir() / "crds").rglob("*.yaml")):
        text = path.read_text()
        group, names = _CRD_GROUP.search(text), _CRD_NAMES.search(text)
        kind = _CRD_KIND.search(names.group(1)) if names else None
        if group and kind:
            index[(group.group(1), kind.group(1))] = path
        else:  # an unusual layout: parse it
            doc = yaml.load(text, Loader=_YAML_LOADER)
            index[(doc["spec"]["group"], doc["spec"]["names"]["kind"])] = path
    return index


@functools.cache
def _crd(path: Path) -> dict:
    doc = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    assert doc.get("kind") == "CustomResourceDefinition", path
    return doc


def _structural(node: dict, *, in_junctor: bool = False) -> dict:
    """openAPIV3Schema -> JSON schema with the apiextensions server's meaning of the x-kubernetes-* extensions."""
    node = dict(node)
    if isinstance(node.get("properties"), dict):
        node["properties"] = {k: _structural(v, in_junctor=in_junctor) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"], in_junctor=in_junctor)
    if isinstance(node.get("items"), dict):
        node["items"] = _structural(node["items"], in_junctor=in_junctor)
    for junctor in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(junctor), list):
            node[junctor] = [_structural(s, in_junctor=True) for s in node[junctor]]
    if isinstance(node.get("not"), dict):
        node["not"] = _structural(node["not"], in_junctor=True)
    if node.get("x-kubernetes-int-or-string"):
        node["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in node:
        node["type"] = [*(node["type"] if isinstance(node["type"], list) else [node["type"]]), "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    if node.get("x-kubernetes-embedded-resource"):
        properties = node.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = {"allOf": [{"$ref": f"#/definitions/{OBJECT_META}"}, _loose(properties.get("metadata"))]}
        node["required"] = sorted({*node.get("required", []), "apiVersion", "kind"})
    if (not in_junctor and node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in node):
        node["additionalProperties"] = False  # the server prunes unknown fields; here they are errors
    return node


def _loose(schema: dict | None) -> dict:
    """A CRD's constraints on metadata (name length, ...) without making ObjectMeta's own fields unknown."""
    schema = dict(schema or {})
    schema.pop("additionalProperties", None)
    return _structural(schema, in_junctor=True)


@functools.cache
def _crd_version(path: Path, version: str) -> tuple:
    """(raw schema without nulls, JSON-schema validator) of one version of a CRD, or (None, reason)."""
    spec = _crd(path)["spec"]
    versions = {v["name"]: v for v in spec["versions"]}
    entry = versions.get(version)
    served = sorted(name for name, v in versions.items() if v.get("served"))
    if entry is None or not entry.get("served"):
        return None, f"version {version} is not served by {path.name} (served: {', '.join(served)})"
    raw = _without_nulls(entry["schema"]["openAPIV3Schema"])
    schema = _structural(raw)
    properties = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties["metadata"] = {"allOf": [{"$ref": f"#/definitions/{OBJECT_META}"}, _loose(raw.get("properties", {}).get("metadata"))]}
    schema["definitions"] = _definitions_closure(OBJECT_META)
    return raw, _CrdValidator(schema)


def _defaults(value, schema: dict):
    """Structural defaulting, as the API server does before validation: nulls of non-nullable fields are dropped,
    then missing properties with a ``default`` get it (and that value is defaulted in turn)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
        for key in [k for k, v in value.items() if v is None]:
            sub = properties.get(key, additional or {})
            if not sub.get("nullable"):
                del value[key]
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            sub = properties.get(key, additional)
            if sub is not None:
                _defaults(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _defaults(item, schema["items"])


def _list_type(validator, list_type, instance, schema):
    if not validator.is_type(instance, "array") or list_type not in ("set", "map"):
        return
    seen = {}
    keys = schema.get("x-kubernetes-list-map-keys") or []
    for i, item in enumerate(instance):
        if list_type == "map" and isinstance(item, dict):
            identity = json.dumps([item.get(k) for k in keys])
        else:
            identity = json.dumps(item, sort_keys=True)
        if identity in seen:
            what = f"map keys {keys}" if list_type == "map" else "value"
            yield jsonschema.ValidationError(f"duplicate entry: item {i} has the same {what} as item {seen[identity]} "
                                             f"(x-kubernetes-list-type: {list_type})")
        seen.setdefault(identity, i)


# CEL ----------------------------------------------------------------------------------------------------------------


def _cel_functions() -> dict:
    # The Kubernetes CEL string library functions the collection's CRDs use, beside CEL's standard ones.
    def lower_ascii(s):
        return celtypes.StringType(str(s).lower())

    def upper_ascii(s):
        return celtypes.StringType(str(s).upper())

    def trim(s):
        return celtypes.StringType(str(s).strip())

    return {"lowerAscii": lower_ascii, "upperAscii": upper_ascii, "trim": trim}


@functools.cache
def _cel_program(rule: str):
    environment = celpy.Environment()
    return environment.program(environment.compile(rule), functions=_cel_functions())


def _cel_rules(validator, rules, instance, schema):
    if not CEL_AVAILABLE:
        return
    for rule in rules:
        text = rule.get("rule", "")
        if "oldSelf" in text:  # transition rule: evaluated on update only
            continue
        where = f" (fieldPath {rule['fieldPath']})" if rule.get("fieldPath") else ""
        try:
            result = _cel_program(text).evaluate({"self": celpy.json_to_cel(instance)})
        except Exception as exc:  # noqa: BLE001 - any evaluation error rejects the object, as on the server
            yield jsonschema.ValidationError(f"CEL rule {text!r} could not be evaluated: {_short(str(exc), 200)}{where}")
            continue
        if isinstance(result, Exception):
            yield jsonschema.ValidationError(f"CEL rule {text!r} could not be evaluated: {_short(str(result), 200)}{where}")
        elif result is not True and result != celtypes.BoolType(True):
            yield jsonschema.ValidationError(f"{rule.get('message') or 'failed rule: ' + text}{where}")


@functools.cache
def _regex(pattern: str):
    # RE2 where installed: Go's syntax and meaning (Python's re does not know \p{L}, used by config.openshift.io).
    return re2.compile(pattern) if re2 is not None else re.compile(pattern)


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"pattern": _pattern, "x-kubernetes-list-type": _list_type, "x-kubernetes-validations": _cel_rules})


# --------------------------------------------------------------------------------------------------------------------
# Metadata checks shared by every kind


def _metadata_problems(obj: dict) -> list:
    out = []
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = metadata.get("name")
    kind = obj.get("kind")
    if not name and not metadata.get("generateName"):
        out.append(("metadata.name", "name is required"))
    elif isinstance(name, str):
        pattern, limit, what = (_DNS_1035_LABEL, 63, "a DNS-1035 label") if kind == "Service" else (
            (_DNS_LABEL, 63, "a DNS-1123 label") if kind == "Namespace" else (_DNS_SUBDOMAIN, 253, "a DNS-1123 subdomain"))
        if not pattern.fullmatch(name) or len(name) > limit:
            out.append(("metadata.name", f"{name!r} is not {what} (lowercase letters, digits, '-'; at most {limit})"))
    for key, value in (metadata.get("labels") or {}).items():
        prefix, dummy, label = str(key).rpartition("/")
        if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))) or len(label) > 63 or not _LABEL_NAME.fullmatch(label):
            out.append((_json_path(["metadata", "labels", key]), f"invalid label key {key!r}"))
        if not isinstance(value, str) or len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
            out.append((_json_path(["metadata", "labels", key]), f"invalid label value {value!r} (at most 63 characters: "
                                                                 "letters, digits, '-', '_', '.'; alphanumeric at both ends)"))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Checking


def validators_for(api_version: str, kind: str) -> list:
    """Names of the validators that check objects of this apiVersion/kind (empty: no schema is known)."""
    names = []
    group = _group_of(api_version)
    crd = crd_index().get((group, kind))
    if crd is not None:
        names.append(f"crd {crd.stem}")
    if openshift_definition(api_version, kind):
        names.append("openshift-openapi")
    if crd is None and _is_kubernetes_group(group) and _kubernetes_validator(api_version, kind) is not None:
        names.append(f"kubernetes {K8S_VERSION}")
    return names


def _errors(validator, instance, patch: bool) -> list:
    found = [e for e in validator.iter_errors(instance) if not (patch and e.validator in ("required", "x-kubernetes-validations"))]
    # "not valid under any of the given schemas" adds nothing where a plainer error names the same field.
    plain = {tuple(e.absolute_path) for e in found if e.validator not in ("anyOf", "oneOf")}
    return sorted({(_json_path(e.absolute_path), _short(e.message)) for e in found
                   if e.validator not in ("anyOf", "oneOf") or tuple(e.absolute_path) not in plain})


def check_object(obj, file: str = "?", *, patch: bool = False) -> tuple:
    """(validator names, [(json path, message, validator)]) for one object."""
    if not isinstance(obj, dict) or not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
        return [], [("(root)", "not a Kubernetes object (apiVersion and kind are required)", "-")]
    obj = {k: v for k, v in obj.items() if k != "__file__"}
    api_version, kind = obj["apiVersion"], obj["kind"]
    names = validators_for(api_version, kind)
    problems = [(path, message, "metadata") for path, message in _metadata_problems(obj)]
    if not names:
        problems.append(("(root)", f"no schema for {api_version} {kind}: no CRD in shared/crds, no OpenShift definition, "
                                   f"no Kubernetes {K8S_VERSION} schema", "-"))
    for name in names:
        if name.startswith("crd "):
            raw, validator = _crd_version(crd_index()[(_group_of(api_version), kind)], _version_of(api_version))
            if raw is None:
                problems.append(("apiVersion", validator, name))
                continue
            instance = copy.deepcopy(obj)
            if not patch:
                _defaults(instance, raw)
        elif name == "openshift-openapi":
            validator, instance = _openshift_validator(openshift_definition(api_version, kind)), _without_nulls(obj)
        else:
            validator, instance = _kubernetes_validator(api_version, kind), obj
        problems.extend((path, message, name) for path, message in _errors(validator, instance, patch))
    return names, problems


def load_dir(root: Path) -> list:
    """[(relative file, object)] for every YAML document under root, in file order."""
    root = Path(root)
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")):
        for doc in yaml.load_all(path.read_text(), Loader=_YAML_LOADER):
            if doc is not None:
                out.append((str(path.relative_to(root)), doc))
    return out


def _pairs(objects) -> list:
    if isinstance(objects, (str, Path)):
        return load_dir(Path(objects))
    out = []
    for item in objects:
        if isinstance(item, tuple):
            out.append(item)
        else:
            out.append((item.get("__file__", "?") if isinstance(item, dict) else "?", item))
    return out


def check(objects, *, patches: Iterable[str] = ()) -> Report:
    """Check a render directory or objects; ``patches``: globs of files that hold server-side-apply patches."""
    patches = list(patches)
    report = Report()
    for file, obj in _pairs(objects):
        patch = any(fnmatch.fnmatch(file, pattern) for pattern in patches)
        names, problems = check_object(obj, file, patch=patch)
        meta = obj.get("metadata") if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) else {}
        kind = obj.get("kind", "?") if isinstance(obj, dict) else "?"
        name = meta.get("name") or meta.get("generateName") or "?"
        report.checked.append((file, kind, name, names))
        report.problems.extend(Problem(file, kind, name, path, message, validator) for path, message, validator in problems)
    return report


def assert_valid(objects, *, minimum: int = 1, patches: Iterable[str] = ()) -> Report:
    """Check and raise SchemaViolation on any problem, or when fewer than ``minimum`` objects were found."""
    report = check(objects, patches=patches)
    if report.problems:
        raise SchemaViolation(report.problems)
    if len(report.checked) < minimum:
        raise AssertionError(f"only {len(report.checked)} object(s) to check, expected at least {minimum}")
    return report
