"""The CRDs in deploy/crds/ and the airlock's C validator agree.

Every fixture in tests/fixtures/resources/valid/ must pass, and every one in
invalid/ must fail, under two independent implementations:

1. the CRDs' openAPIV3Schema checked by the `jsonschema` library, plus the
   ObjectMeta rules the API server applies (written out below). Kubernetes
   prunes fields a structural schema does not declare; the airlock refuses
   them instead, so here every object node that lists its properties gets
   additionalProperties: false.
2. `airlock validate` (the binary in $AIRLOCK_BIN, default bin/airlock), which
   must also print the error each invalid fixture's "# expect:" line names.

YAML is read as YAML 1.2 core schema (as the airlock does: `yes` and dates are
strings), refusing aliases, anchors and duplicate keys.
"""
import copy
import glob
import os
import re
import subprocess

import pytest
import yaml

try:
    import jsonschema
except ImportError:  # pragma: no cover - the bootstrap installs it
    subprocess.run(["python3", "-m", "pip", "install", "--quiet", "jsonschema"], check=True)
    import jsonschema

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(os.environ.get("AIRLOCK_FIXTURES", os.path.join(ROOT, "tests", "fixtures")), "resources")
CRDS = os.path.join(ROOT, "deploy", "crds")
API_VERSION = "xlscsde.nhs.uk/v1"


# ---- YAML 1.2 core, strict ----

class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars; no aliases, anchors or duplicate keys."""

    yaml_implicit_resolvers = {}

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError("aliases are not allowed (line %d)" % (event.start_mark.line + 1))
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise yaml.YAMLError("anchors are not allowed (line %d)" % (event.start_mark.line + 1))
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise yaml.YAMLError("mapping keys must be strings (line %d)" % (key_node.start_mark.line + 1))
            if key in seen:
                raise yaml.YAMLError("duplicate key %s (line %d)" % (key, key_node.start_mark.line + 1))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _int(loader, node):
    value = loader.construct_scalar(node)
    sign = -1 if value.startswith("-") else 1
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return sign * int(value.lstrip("+-"), 10)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
StrictLoader.add_constructor("tag:yaml.org,2002:int", _int)


def load_yaml(text):
    return yaml.load(text, Loader=StrictLoader)


# ---- the CRD schemas, made strict ----

def strict(schema):
    """Adds additionalProperties: false to every node that lists properties."""
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            walk(child)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        for branch in node.get("anyOf", []):
            walk(branch)

    walk(s)
    return s


DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
DATE_TIME = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-]([0-9]{2}):([0-9]{2}))\Z")
MDAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def _date_ok(y, m, d):
    if not (1 <= m <= 12 and 1 <= d <= MDAYS[m - 1]):
        return False
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    return not (m == 2 and d == 29 and not leap)


FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date")
def _is_date(value):
    if not isinstance(value, str):
        return True
    m = DATE.match(value)
    return bool(m) and _date_ok(*map(int, m.groups()))


@FORMATS.checks("date-time")
def _is_date_time(value):
    if not isinstance(value, str):
        return True
    m = DATE_TIME.match(value)
    if not m:
        return False
    y, mo, d, h, mi, s = map(int, m.groups()[:6])
    if not _date_ok(y, mo, d) or h > 23 or mi > 59 or s > 59:
        return False
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    return True


@FORMATS.checks("int32")
def _is_int32(value):
    return not isinstance(value, (int, float)) or -(2 ** 31) <= value < 2 ** 31


@FORMATS.checks("int64")
def _is_int64(value):
    return not isinstance(value, (int, float)) or -(2 ** 63) <= value < 2 ** 63


def _pattern(validator, pattern, instance, schema):
    # Go's RE2 (the API server) and POSIX regexec (the airlock) match $ only
    # at the very end; Python's $ also matches before a final newline.
    if validator.is_type(instance, "string") and not re.search(pattern.replace("$", r"\Z"), instance):
        yield jsonschema.ValidationError("%r does not match %r" % (instance, pattern))


StrictValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _pattern})


def load_crds():
    crds = {}
    for path in sorted(glob.glob(os.path.join(CRDS, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            crd = load_yaml(f.read())
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1", path
        spec = crd["spec"]
        assert spec["group"] == "xlscsde.nhs.uk", path
        assert spec["scope"] == "Namespaced", path
        assert "airlock" in spec["names"]["categories"], path
        assert crd["metadata"]["name"] == "%s.%s" % (spec["names"]["plural"], spec["group"]), path
        (version,) = spec["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"], path
        schema = version["schema"]["openAPIV3Schema"]
        if spec["names"]["kind"] == "AirlockAuditRecord":
            # The audit log's records (docs/kube-store.md): append-only, no status, not a
            # resource people write, so not one the C validator serves.
            assert "subresources" not in version, path
            jsonschema.Draft7Validator.check_schema(schema)
            continue
        assert version["subresources"]["status"] == {}, path
        jsonschema.Draft7Validator.check_schema(schema)
        crds[spec["names"]["kind"]] = StrictValidator(strict(schema), format_checker=FORMATS)
    return crds


CRD_VALIDATORS = load_crds()


# ---- ObjectMeta, as the API server checks it ----

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")


def is_subdomain(s):
    return len(s) <= 253 and bool(SUBDOMAIN.match(s))


def is_qualified_name(s):
    parts = s.split("/")
    if len(parts) > 2:
        return False
    if len(parts) == 2 and not is_subdomain(parts[0]):
        return False
    return len(parts[-1]) <= 63 and bool(NAME_PART.match(parts[-1]))


def check_metadata(md):
    if not isinstance(md, dict):
        return "metadata must be a mapping"
    if "name" not in md:
        return "metadata.name: Required value"
    total = 0
    for key, v in md.items():
        if key == "name":
            if not isinstance(v, str) or not is_subdomain(v):
                return "metadata.name: invalid"
        elif key == "namespace":
            if not isinstance(v, str) or len(v) > 63 or not LABEL.match(v):
                return "metadata.namespace: invalid"
        elif key in ("labels", "annotations"):
            if not isinstance(v, dict):
                return "metadata.%s: must be a mapping" % key
            for k, val in v.items():
                if not is_qualified_name(k):
                    return "metadata.%s: bad key %r" % (key, k)
                if not isinstance(val, str):
                    return "metadata.%s.%s: must be a string" % (key, k)
                if key == "labels" and val and (len(val) > 63 or not NAME_PART.match(val)):
                    return "metadata.labels.%s: bad value" % k
                total += len(k.encode()) + len(val.encode()) if key == "annotations" else 0
            if total > 256 * 1024:
                return "metadata.annotations: too long"
        elif key in ("generateName", "uid", "resourceVersion", "selfLink"):
            if not isinstance(v, str) or len(v.encode()) > 253:
                return "metadata.%s: must be a string" % key
        elif key in ("generation", "deletionGracePeriodSeconds"):
            if type(v) is not int or v < 0:
                return "metadata.%s: must be a non-negative integer" % key
        elif key in ("creationTimestamp", "deletionTimestamp"):
            if v is not None and not (isinstance(v, str) and _is_date_time(v)):
                return "metadata.%s: must be a date-time" % key
        elif key == "finalizers":
            if not isinstance(v, list) or not all(isinstance(f, str) and is_qualified_name(f) for f in v):
                return "metadata.finalizers: must be qualified names"
        elif key == "ownerReferences":
            if not isinstance(v, list):
                return "metadata.ownerReferences: must be a list"
            for ref in v:
                if not isinstance(ref, dict):
                    return "metadata.ownerReferences: must hold mappings"
                for field in ("apiVersion", "kind", "name", "uid"):
                    if not isinstance(ref.get(field), str):
                        return "metadata.ownerReferences.%s: Required value" % field
                for field, val in ref.items():
                    if field in ("apiVersion", "kind", "name", "uid"):
                        continue
                    if field not in ("controller", "blockOwnerDeletion") or not isinstance(val, bool):
                        return "metadata.ownerReferences.%s: invalid" % field
        elif key == "managedFields":
            if not isinstance(v, list):
                return "metadata.managedFields: must be a list"
        else:
            return "metadata.%s: unknown field" % key
    return None


def schema_error(text):
    """None when the document is valid by the CRDs, else a description."""
    try:
        obj = load_yaml(text)
    except yaml.YAMLError as e:
        return "YAML: %s" % e
    if not isinstance(obj, dict):
        return "not a mapping"
    if obj.get("apiVersion") != API_VERSION:
        return "apiVersion"
    validator = CRD_VALIDATORS.get(obj.get("kind"))
    if validator is None:
        return "kind"
    problem = check_metadata(obj.get("metadata"))
    if problem:
        return problem
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        return "%s: %s" % (".".join(str(p) for p in e.path), e.message[:200])
    return None


def fixtures(kind):
    paths = sorted(glob.glob(os.path.join(FIXTURES, kind, "*.yaml")))
    assert paths, "no fixtures in %s" % os.path.join(FIXTURES, kind)
    return paths


def expectation(path):
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    assert first.startswith("# expect: "), "%s: first line must be '# expect: <error substring>'" % path
    return first[len("# expect: "):].rstrip("\n")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- the schema side ----

def test_four_resource_crds():
    assert sorted(CRD_VALIDATORS) == sorted([
        "AnalyticsWorkspace", "AnalyticsWorkspaceBinding",
        "AnalyticsWorkspaceDataSource", "AnalyticsWorkspaceDataBinding"])


def test_enough_invalid_fixtures():
    assert len(fixtures("invalid")) >= 15


@pytest.mark.parametrize("path", fixtures("valid"), ids=os.path.basename)
def test_valid_fixture_passes_crd_schema(path):
    assert schema_error(read(path)) is None


@pytest.mark.parametrize("path", fixtures("invalid"), ids=os.path.basename)
def test_invalid_fixture_fails_crd_schema(path):
    expectation(path)
    assert schema_error(read(path)) is not None, "the CRD schema accepts %s" % path


def test_seed_examples_are_verbatim():
    # The design seed lives in shared/ beside the repository (as in CI).
    default = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "seed",
                           "000_12c546343ad6d68e.txt")
    seed = os.environ.get("AIRLOCK_SEED", default)
    assert os.path.exists(seed), (
        f"the design seed {seed} is missing: it sits in shared/ beside the repository; "
        "set AIRLOCK_SEED to its path")
    text = read(seed)
    for name in ("seed-import-datasource.yaml", "seed-uploaded-datasource.yaml", "seed-databinding.yaml"):
        assert read(os.path.join(FIXTURES, "valid", name)) in text, name


# ---- the C side: airlock validate ----

def airlock_bin():
    path = os.environ.get("AIRLOCK_BIN") or os.path.join(ROOT, "bin", "airlock")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("airlock binary %s not found: run `make` first or set AIRLOCK_BIN" % path)
    return path


def run_validate(*args):
    return subprocess.run([airlock_bin(), "validate", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", fixtures("valid"), ids=os.path.basename)
def test_valid_fixture_passes_airlock_validate(path):
    r = run_validate(path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith(" valid")


@pytest.mark.parametrize("path", fixtures("invalid"), ids=os.path.basename)
def test_invalid_fixture_fails_airlock_validate(path):
    r = run_validate("-f", path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert expectation(path) in r.stdout + r.stderr


def test_airlock_validate_multi_document(tmp_path):
    docs = [read(p) for p in fixtures("valid")[:3]]
    f = tmp_path / "all.yaml"
    f.write_text("\n---\n".join(docs) + "\n---\n")
    r = run_validate(str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(" valid\n") == 3
    bad = read(fixtures("invalid")[0])
    f.write_text(docs[0] + "\n---\n" + bad)
    r = run_validate(str(f))
    assert r.returncode == 1
    assert r.stdout.count(" valid\n") == 1


def test_airlock_validate_usage():
    r = run_validate()
    assert r.returncode == 2
    r = run_validate("--help")
    assert r.returncode == 0 and "usage: airlock validate" in r.stdout
    r = run_validate("--bogus", "x.yaml")
    assert r.returncode == 2
    r = run_validate("/nonexistent/file.yaml")
    assert r.returncode == 1 and "cannot open" in r.stderr


# ---- differential: mutate every field of every valid fixture ----

def _mutations(obj):
    """Yields (description, mutated copy): each field deleted, retyped,
    lengthened, and given an unknown sibling."""
    replacements = [7, -1, 2.5, "x", "", True, None, [], {}, "A" * 300, "ok-name", "2025-01-01",
                    "2025-01-01T00:00:00Z", [{"type": "pvc", "name": "p"}]]

    def walk(node, path):
        if isinstance(node, dict):
            for key in list(node):
                yield path + [key]
                yield from walk(node[key], path + [key])
        elif isinstance(node, list):
            for i, item in enumerate(node[:3]):
                yield path + [i]
                yield from walk(item, path + [i])

    def at(root, path):
        for p in path[:-1]:
            root = root[p]
        return root

    for path in list(walk(obj, [])):
        if path[0] in ("apiVersion", "kind"):
            continue
        m = copy.deepcopy(obj)
        parent = at(m, path)
        del parent[path[-1]]
        yield "delete %s" % path, m
        for r in replacements:
            m = copy.deepcopy(obj)
            at(m, path)[path[-1]] = copy.deepcopy(r)
            yield "set %s = %r" % (path, r if not isinstance(r, str) else r[:20]), m
        m = copy.deepcopy(obj)
        parent = at(m, path)
        if isinstance(parent, dict):
            parent["zzUnknown"] = "x"
            yield "add unknown beside %s" % path, m


def test_differential_mutations(tmp_path):
    import json

    cases = []
    for src in fixtures("valid"):
        obj = load_yaml(read(src))
        for desc, m in _mutations(obj):
            cases.append(("%s: %s" % (os.path.basename(src), desc), json.dumps(m)))
    paths = []
    for i, (_, text) in enumerate(cases):
        p = tmp_path / ("m%05d.json" % i)
        p.write_text(text)
        paths.append(str(p))
    r = run_validate(*paths)
    verdict = {}
    for line in (r.stdout + r.stderr).splitlines():
        name = line.split(":", 1)[0]
        verdict[name] = line.endswith(" valid")
    disagree = []
    for (desc, text), p in zip(cases, paths):
        assert p in verdict, "no verdict for %s (%s)" % (p, desc)
        if verdict[p] != (schema_error(text) is None):
            disagree.append("%s: airlock %s, CRD schema %s" % (
                desc, "accepts" if verdict[p] else "refuses", schema_error(text) or "accepts"))
    assert len(cases) > 1000
    assert not disagree, "\n".join(disagree[:30])
