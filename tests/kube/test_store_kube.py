"""The Kubernetes store (src/store/store_kube.c) against the real API server.

The tests themselves are C (tests/kube/test_store_kube.c, cmocka): this file
compiles that driver against the tree's static library with the Makefile's
flags, starts it with the `kube` fixture's admin kubeconfig and serves its
control requests (restart the API server, compact etcd, run kubectl) over a
pair of pipes. It runs twice: against build/release and, under ASan+UBSan,
against build/sanitize (build those with `make` and
`make SANITIZE=address,undefined` first; a missing library fails the test,
saying which command builds it).

AIRLOCK_STORE_KUBE_DRIVER=<binary> runs an already built driver instead
(both modes use it).

The compaction case needs an API server without a watch cache (with one,
compacting etcd never reaches a watch): it gets its own KubeEnv.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from kubeenv import KubeEnv

REPO = Path(__file__).resolve().parents[2]
DRIVER_SRC = REPO / "tests" / "kube" / "test_store_kube.c"
CRD_DIR = REPO / "deploy" / "crds"
PKGS = ["libmicrohttpd", "jansson", "yaml-0.1", "sqlite3", "libsodium", "libcrypto"]
WARN = ["-Wall", "-Wextra", "-Werror", "-Wformat=2", "-Wshadow", "-Wpointer-arith",
        "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wvla", "-Wno-unused-parameter"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
MODES = {
    "release": ("build/release", [], "make"),
    "asan": ("build/sanitize", SANITIZE, "make SANITIZE=address,undefined"),
}


def _pkg(*args: str) -> list[str]:
    out = subprocess.run(["pkg-config", *args], capture_output=True, text=True, check=True).stdout
    return shlex.split(out)


def build_driver(mode: str, out_dir: Path) -> Path:
    """gcc the driver against the mode's libairlock.a, as the Makefile links a unit test."""
    override = os.environ.get("AIRLOCK_STORE_KUBE_DRIVER")
    if override:
        return Path(override)
    build, extra, make_cmd = MODES[mode]
    lib = REPO / build / "lib" / "libairlock.a"
    if not lib.exists():
        pytest.fail(f"{lib} is missing: run `{make_cmd}` first")
    syms = subprocess.run(["nm", "-g", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    if " store_kube_open" not in syms:
        pytest.fail(f"{lib} has no store_kube_open (built before src/store/store_kube.c existed): "
                    f"run `{make_cmd}`")
    out = out_dir / f"test_store_kube_{mode}"
    cmd = ["gcc", "-std=c17", "-D_GNU_SOURCE", '-DAIRLOCK_VERSION="test"', "-Isrc", *WARN,
           "-O1", "-g", *extra, *_pkg("--cflags", *PKGS, "libcurl"), "-pthread",
           "-o", str(out), str(DRIVER_SRC), str(lib),
           *_pkg("--libs", *PKGS), "-ldl", "-pthread", "-lm", "-lcmocka"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"building the driver failed:\n{' '.join(cmd)}\n{proc.stderr}"
    return out


def _serve_control(env: KubeEnv, requests, answers, log: list[str]):
    """Answers the driver's requests until it closes its end."""
    for line in requests:
        try:
            req = json.loads(line)
            log.append(" ".join(req))
            if req == ["restart_apiserver"]:
                env.restart_apiserver()
            elif req == ["compact_etcd"]:
                env.compact_etcd()
            elif req and req[0] == "kubectl":
                env.kubectl(*req[1:])
            else:
                raise ValueError(f"unknown request {req!r}")
            answers.write("ok\n")
        except Exception as e:  # the driver reports it as a test failure
            answers.write("error " + str(e).replace("\n", " ")[:3000] + "\n")
        answers.flush()


def run_driver(binary: Path, env: KubeEnv, group: str, timeout: float = 900) -> str:
    suffix = uuid.uuid4().hex[:6]
    namespaces = {"AIRLOCK_TEST_NAMESPACE": f"store-test-{suffix}",
                  "AIRLOCK_TEST_AUDIT_NAMESPACE": f"store-audit-{suffix}",
                  "AIRLOCK_TEST_FORGE_NAMESPACE": f"store-forge-{suffix}"}
    for ns in namespaces.values():
        env.kubectl("create", "namespace", ns)
    to_driver_r, to_driver_w = os.pipe()
    from_driver_r, from_driver_w = os.pipe()
    run_env = dict(os.environ, AIRLOCK_TEST_KUBECONFIG=str(env.kubeconfig("admin")),
                   AIRLOCK_TEST_GROUP=group,
                   AIRLOCK_TEST_CONTROL=f"{to_driver_r},{from_driver_w}",
                   ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
                   **namespaces)
    run_env.pop("KUBECONFIG", None)
    proc = subprocess.Popen([str(binary)], cwd=REPO, env=run_env, pass_fds=(to_driver_r, from_driver_w),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.close(to_driver_r)
    os.close(from_driver_w)
    requests = os.fdopen(from_driver_r, "r")
    answers = os.fdopen(to_driver_w, "w")
    log: list[str] = []
    chunks: list[str] = []
    # The driver's output is drained by a thread; control requests are served
    # on this one, because a server the harness (re)starts gets SIGTERM when
    # the thread that started it ends (PR_SET_PDEATHSIG is per thread).
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        _serve_control(env, requests, answers, log)
        proc.wait()
    finally:
        killer.cancel()
        reader.join(timeout=60)
        requests.close()
        answers.close()
    out = "".join(chunks)
    if proc.returncode == -9:
        pytest.fail(f"the driver did not finish in {timeout} s:\n{out}")
    print(out)
    print("control requests:", log)
    assert proc.returncode == 0, f"{binary.name} ({group}) exited {proc.returncode}:\n{out}"
    assert "[  FAILED  ]" not in out and "[  PASSED  ]" in out, out
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out
    return out


@pytest.fixture(scope="module", params=list(MODES))
def driver(request, tmp_path_factory) -> Path:
    return build_driver(request.param, tmp_path_factory.mktemp("store-kube"))


@pytest.fixture(scope="module")
def kube_nocache(kube_bin):
    """An API server with --watch-cache=false: compacting etcd makes an old
    watch fail with 410 there."""
    env = KubeEnv(kube_bin, watch_cache=False)
    env.start()
    try:
        env.apply_crds(CRD_DIR)
        yield env
    finally:
        env.stop()


def test_store_kube(kube, driver):
    out = run_driver(driver, kube, "main")
    assert "[  PASSED  ] 11 test(s)." in out, out
    # The forged record and the edited one were both named by the verifier.
    assert "# verifier: record" in out, out


def test_store_kube_compaction(kube_nocache, driver):
    out = run_driver(driver, kube_nocache, "compaction")
    assert "[  PASSED  ] 1 test(s)." in out, out
