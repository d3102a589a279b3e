"""Pods as processes: each replica of a Deployment runs the real azmlinfsrv from its image bundle.

The pod template is honoured where it means something on a laptop: image (which bundle runs),
env, the container port, the readiness probe path. A pod that exits is restarted with back-off,
as the kubelet would, and drops out of the gateway's endpoints until it is ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from workbook.envoy import Endpoint
from workbook.errors import ConfigError, ReadinessError
from workbook.local.ports import die_with_parent, free_port
from workbook.registry import ImageStore

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)


@dataclass(frozen=True)
class PodSpec:
    """What one replica of a Deployment runs, read from its pod template."""

    deployment: str
    template_hash: str
    labels: dict[str, str]
    image: str
    env: dict[str, str]
    container_port: int
    readiness_path: str
    startup_budget_s: float = 300.0


def pod_spec(deployment: dict[str, Any]) -> tuple[PodSpec, int]:
    """The pod spec and replica count of a rendered Deployment (pure)."""
    name = deployment["metadata"]["name"]
    obj = f"Deployment {deployment['metadata'].get('namespace', '')}/{name}".replace(" /", " ")
    spec = deployment.get("spec", {})
    template = spec.get("template", {})
    containers = template.get("spec", {}).get("containers", [])
    if len(containers) != 1:
        raise ConfigError(obj, "spec.template.spec.containers", "must hold exactly one container")
    c = containers[0]
    ports = c.get("ports") or [{"containerPort": 5001}]
    env = {e["name"]: str(e.get("value", "")) for e in c.get("env", []) if "value" in e}
    probe = (c.get("readinessProbe") or {}).get("httpGet") or {}
    startup = c.get("startupProbe") or {}
    budget = float(startup.get("initialDelaySeconds", 0)) + float(
        startup.get("failureThreshold", 60)
    ) * float(startup.get("periodSeconds", 5))
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        raise ConfigError(obj, "spec.replicas", f"must be an integer >= 0, got {replicas!r}")
    body = {"image": c.get("image"), "env": env, "ports": ports, "probe": probe}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return (
        PodSpec(
            deployment=name,
            template_hash=digest,
            labels=dict(template.get("metadata", {}).get("labels", {})),
            image=str(c.get("image", "")),
            env=env,
            container_port=int(ports[0]["containerPort"]),
            readiness_path=str(probe.get("path", "/")),
            startup_budget_s=budget if startup else 300.0,
        ),
        replicas,
    )


@dataclass
class Pod:
    """One running (or restarting) replica."""

    name: str
    spec: PodSpec
    port: int
    ready: bool = False
    restarts: int = 0
    pid: int | None = None
    stopping: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)

    def endpoint(self) -> Endpoint:
        return Endpoint(
            name=self.name,
            labels=self.spec.labels,
            address="127.0.0.1",
            ports={self.spec.container_port: self.port},
        )

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "deployment": self.spec.deployment,
            "version": self.spec.labels.get("version", ""),
            "image": self.spec.image,
            "port": self.port,
            "pid": self.pid,
            "ready": self.ready,
            "restarts": self.restarts,
        }


class PodManager:
    """Starts, watches and stops pod processes; calls ``on_change`` when readiness changes."""

    def __init__(
        self,
        root: Path,
        images: ImageStore,
        on_change: Callable[[], Awaitable[None]],
        ready_timeout_s: float = 600.0,
    ) -> None:
        self.root = root
        self.images = images
        self.on_change = on_change
        self.ready_timeout_s = ready_timeout_s
        self.pods: dict[str, Pod] = {}
        self._session: aiohttp.ClientSession | None = None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        return self._session

    def endpoints(self) -> list[Endpoint]:
        return [p.endpoint() for p in self.pods.values() if p.ready and not p.stopping]

    def check_images(self, deployments: list[dict[str, Any]]) -> None:
        """Every image a Deployment names exists in the image store (before anything starts)."""
        for d in deployments:
            spec, _ = pod_spec(d)
            if not self.images.exists(spec.image):
                known = ", ".join(b.ref for b in self.images.list()) or "none"
                raise ConfigError(
                    f"Deployment {d['metadata']['name']}",
                    "spec.template.spec.containers[0].image",
                    f"{spec.image!r} is not in the local image store (known: {known}); "
                    "package it first (notebook 02 or `workbook up` builds the demo images)",
                )

    async def scale_up(self, deployments: list[dict[str, Any]]) -> list[Pod]:
        """Start the pods the Deployments want and wait until they are ready.

        Pods already running the same template are kept. On failure the new pods are stopped
        and ReadinessError is raised: the old pods keep serving.
        """
        started: list[Pod] = []
        for d in deployments:
            spec, replicas = pod_spec(d)
            current = [
                p for p in self._of(spec.deployment) if p.spec.template_hash == spec.template_hash
            ]
            for i in range(len(current), replicas):
                pod = Pod(name=self._pod_name(spec, i), spec=spec, port=free_port())
                self.pods[pod.name] = pod
                pod.task = asyncio.create_task(self._run(pod))
                started.append(pod)
        # as the kubelet: a pod has its startup probe's budget to become ready
        budget = max([p.spec.startup_budget_s for p in started], default=0.0)
        budget = min(budget, self.ready_timeout_s)
        deadline = time.monotonic() + budget
        while any(not p.ready for p in started):
            if time.monotonic() > deadline:
                waiting = [p.name for p in started if not p.ready]
                await self.stop(started)
                raise ReadinessError(
                    f"pods {waiting} did not become ready within {budget:.0f} s (the startup "
                    f"probe's budget); see their pod.log under {self.root}"
                )
            await asyncio.sleep(0.1)
        return started

    def surplus(self, deployments: list[dict[str, Any]]) -> list[Pod]:
        """Pods no Deployment wants any more (old template, scaled down, or deleted)."""
        want: dict[str, tuple[str, int]] = {}
        for d in deployments:
            spec, replicas = pod_spec(d)
            want[spec.deployment] = (spec.template_hash, replicas)
        out = []
        for pod in self.pods.values():
            h, n = want.get(pod.spec.deployment, ("", 0))
            if pod.spec.template_hash != h:
                out.append(pod)
        for dep, (h, n) in want.items():
            same = [p for p in self._of(dep) if p.spec.template_hash == h]
            out.extend(sorted(same, key=lambda p: p.name)[n:])
        return out

    async def stop(self, pods: list[Pod]) -> None:
        for pod in pods:
            pod.stopping = True
            pod.ready = False
        await asyncio.gather(*(self._terminate(p) for p in pods))
        for pod in pods:
            if pod.task:
                pod.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pod.task
            self.pods.pop(pod.name, None)

    async def stop_all(self) -> None:
        await self.stop(list(self.pods.values()))
        if self._session:
            await self._session.close()

    def _of(self, deployment: str) -> list[Pod]:
        return [p for p in self.pods.values() if p.spec.deployment == deployment and not p.stopping]

    def _pod_name(self, spec: PodSpec, index: int) -> str:
        name = f"{spec.deployment}-{spec.template_hash[:5]}-{index}"
        n = index
        while name in self.pods:
            n += 1
            name = f"{spec.deployment}-{spec.template_hash[:5]}-{n}"
        return name

    def _command(self, pod: Pod) -> tuple[list[str], dict[str, str], Path]:
        bundle = self.images.resolve(pod.spec.image)
        home = self.root / pod.name
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        env.update(bundle.env)
        env.update(pod.spec.env)
        env.update(
            HOME=str(home),
            AZUREML_MODEL_DIR=str(bundle.model_dir_path),
            PYTHONUNBUFFERED="1",
            # an image does not change once built: no __pycache__ written into the bundle
            PYTHONDONTWRITEBYTECODE="1",
            POD_NAME=pod.name,
        )
        argv = [
            sys.executable,
            "-m",
            "workbook.local.azmlinfsrv_loopback",
            "--entry_script",
            str(bundle.entry_script_path),
            "--model_dir",
            str(bundle.model_dir_path),
            "--port",
            str(pod.port),
        ]
        return argv, env, home

    async def _run(self, pod: Pod) -> None:
        """Run the pod process for ever: start, wait ready, watch, restart with back-off."""
        attempt = 0
        while not pod.stopping:
            argv, env, home = self._command(pod)
            with open(home / "pod.log", "ab") as log:
                pod.proc = await asyncio.create_subprocess_exec(
                    *argv,
                    env=env,
                    cwd=home,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            pod.pid = pod.proc.pid
            started = time.monotonic()
            watcher = asyncio.create_task(self._probe_until_ready(pod))
            await pod.proc.wait()
            watcher.cancel()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pod.proc.pid, signal.SIGKILL)  # orphaned gunicorn workers hold the port
            was_ready, pod.ready = pod.ready, False
            if pod.stopping:
                return
            if was_ready:
                await self.on_change()
            pod.restarts += 1
            attempt = 0 if time.monotonic() - started > 60 else attempt + 1
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])

    async def _probe_until_ready(self, pod: Pod) -> None:
        url = f"http://127.0.0.1:{pod.port}{pod.spec.readiness_path}"
        http = await self._http()
        while not pod.stopping:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        pod.ready = True
                        await self.on_change()
                        return
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.1)

    async def _terminate(self, pod: Pod) -> None:
        proc = pod.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
