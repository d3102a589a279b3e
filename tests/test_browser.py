"""The walkthrough as a user sees it: JupyterLab from this environment, Debian's Chromium driven by
Playwright, notebooks 03 and 04 run through the UI (Run → Run All Cells).

Loopback only (JupyterLab on 127.0.0.1 with a token), bounded by timeouts. Playwright never
downloads a browser here: it drives ``/usr/bin/chromium`` (``apt-get install chromium``, as
``.ci/run`` does); without one the test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbook.local.target import LocalTarget
from workbook.settings import Settings, project_root

pytestmark = [pytest.mark.integration, pytest.mark.notebooks]

CHROMIUM = os.environ.get("WORKBOOK_CHROMIUM", "/usr/bin/chromium")
#: Headless Chromium as root in a closed network: no sandbox (root), no GPU, and none of the
#: background connections (updates, sync, QUIC) that would fail here.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 180


def _browser_or_skip() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser test: the python package playwright is not installed")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no browser test: no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """JupyterLab on 127.0.0.1 over a copy of the notebooks, with its own state and runs."""
    sync_playwright = _browser_or_skip()  # before anything starts
    root = tmp_path / "notebooks"
    root.mkdir()
    for name in ("03_deploy_helm", "04_shift_traffic"):
        shutil.copy(project_root() / "notebooks" / f"{name}.ipynb", root)
    # render every cell (JupyterLab otherwise renders only the cells near the viewport)
    tracker = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    news = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "WORKBOOK_STATE_DIR": str(tmp_path / "state"),
        "WORKBOOK_RUNS": str(tmp_path / "runs"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
    }
    env.pop("WORKBOOK_RUN_DIR", None)  # an interactive run: its folder is chosen under runs/
    log = (tmp_path / "jupyterlab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port-retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
            f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
            "--LabApp.extension_manager=readonly",  # no look-ups on PyPI from the UI
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "JupyterLab did not start: " + (tmp_path / "jupyterlab.log").read_text()
                    ) from None
                time.sleep(0.5)
        yield {
            "base": base,
            "token": token,
            "root": root,
            "runs": tmp_path / "runs",
            "playwright": sync_playwright,
        }
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
        LocalTarget(Settings(state_dir=tmp_path / "state")).down()


def _run_all(page: Any, lab: dict[str, Any], name: str) -> dict[str, Any]:
    """Open ``name`` in JupyterLab, Run → Run All Cells, wait until every cell ran, save; return
    the saved notebook."""
    # ``reset``: a fresh workspace, so this notebook is the only one open
    page.goto(f"{lab['base']}/lab/tree/{name}.ipynb?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=START_TIMEOUT_S * 1000)
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=START_TIMEOUT_S * 1000
    )
    time.sleep(1)  # the kernel's info lands in the notebook's metadata
    # opening a committed notebook does not modify it (kernel spec and metadata are what
    # JupyterLab would write)
    dirty = page.locator(".lm-TabBar-tab.jp-mod-dirty").all_inner_texts()
    assert not dirty, f"modified on open: {dirty}"
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator("li[data-command='runmenu:run-all']").click()
    # every code cell gets an execution count; none is left waiting at [*] or [ ]
    try:
        page.wait_for_function(
            """() => {
                const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
                return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent));
            }""",
            timeout=RUN_TIMEOUT_S * 1000,
            polling=500,
        )
    except Exception:
        shot = lab["root"].parent / f"{name}-timeout.png"
        page.screenshot(path=str(shot), full_page=True)
        prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
        raise AssertionError(f"{name} did not finish: prompts {prompts}; see {shot}") from None
    page.keyboard.press("Control+s")
    path = lab["root"] / f"{name}.ipynb"
    deadline = time.monotonic() + 30
    while True:
        nb = json.loads(path.read_text())
        counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"]
        if all(counts) or time.monotonic() > deadline:
            return dict(nb)
        time.sleep(0.5)


def _error_outputs(nb: dict[str, Any]) -> list[str]:
    return [
        "\n".join(o.get("traceback", [])) or o.get("evalue", "")
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def test_notebooks_03_and_04_in_jupyterlab_show_their_figures(lab: dict[str, Any]) -> None:
    with lab["playwright"]() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            deploy = _run_all(page, lab, "03_deploy_helm")
            assert not _error_outputs(deploy)
            assert "No Kiali answers at" in page.inner_text(".jp-Notebook")

            stage = _run_all(page, lab, "04_shift_traffic")
            text = page.inner_text(".jp-Notebook")
            images = page.locator(".jp-OutputArea-output[data-mime-type='image/png'] img")
            assert images.count() >= 3, "the figures do not show as images"
            for i in range(images.count()):
                assert images.nth(i).evaluate("img => img.naturalWidth") > 300
            page.screenshot(path=str(lab["runs"] / "04-in-jupyterlab.png"), full_page=True)
        finally:
            browser.close()

    assert not _error_outputs(stage)
    assert "<Figure size" not in text
    assert "recorded stage: canary  10% |" in text and "→ passed" in text
    assert "shift canary to 10% ..." in text  # a line per step while the deploy waits
    # this run's folders: 03 began the rollout, 04 joined it; nothing next to the notebooks
    (rollout,) = [p for p in lab["runs"].iterdir() if p.is_dir()]
    assert sorted(p.name.split("-")[0] for p in rollout.iterdir()) == [
        "03_deploy_helm",
        "04_shift_traffic",
    ]
    (stage_dir,) = rollout.glob("04_shift_traffic-*")
    assert {"split-010.png", "latency-010.png", "mesh-010.png"} <= {
        p.name for p in stage_dir.iterdir()
    }
    left = {p.name for p in lab["root"].iterdir()} - {".ipynb_checkpoints"}
    assert left == {"03_deploy_helm.ipynb", "04_shift_traffic.ipynb"}
