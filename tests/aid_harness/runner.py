"""Run API-format prompts on a real ComfyUI, headless: in this process, or as a server on loopback.

Both runners return a RunResult; the server runner is a context manager that always stops the
process it started.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunResult:
    """What one prompt produced: per-node UI outputs, success, and the error message if it failed."""

    prompt_id: str
    success: bool
    outputs: dict = field(default_factory=dict)
    error: dict | None = None
    messages: list = field(default_factory=list)

    def raise_for_error(self) -> "RunResult":
        """Raise AssertionError with ComfyUI's message when the prompt failed."""
        if not self.success:
            raise AssertionError(f"prompt {self.prompt_id} failed: {json.dumps(self.error, indent=1)[:4000]}")
        return self

    def output_files(self, base: Path, key: str = "images") -> list[Path]:
        """Paths of the files the output nodes reported under `key` (type output or temp)."""
        files = []
        for node_output in self.outputs.values():
            for item in node_output.get(key, []):
                if isinstance(item, dict) and "filename" in item:
                    folder = base / item.get("type", "output") / item.get("subfolder", "")
                    files.append(folder / item["filename"])
        return files


class _ServerStub:
    """The few attributes PromptExecutor reads from PromptServer."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.events = []

    def send_sync(self, event, data, sid=None):
        self.events.append((event, data))


class InProcessRunner:
    """Execute prompts with ComfyUI's own PromptExecutor in this process (host booted by host.py)."""

    def __init__(self, host: dict):
        self.execution = host["execution"]
        self.server = _ServerStub()
        self.executor = self.execution.PromptExecutor(
            self.server, cache_type=self.execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0})

    def run(self, prompt: dict, extra_data: dict | None = None) -> RunResult:
        """Validate then execute `prompt`; validation errors come back as a failed RunResult."""
        import asyncio

        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(self.execution.validate_prompt(prompt_id, prompt, None))
        if not valid:
            return RunResult(prompt_id, False, error={"validation": error, "node_errors": node_errors})
        self.executor.execute(prompt, prompt_id, extra_data or {}, outputs)
        messages = list(self.executor.status_messages)
        failure = next((data for event, data in messages if event in ("execution_error", "execution_interrupted")),
                       None)
        return RunResult(prompt_id, self.executor.success and failure is None,
                         outputs=self.executor.history_result.get("outputs", {}), error=failure, messages=messages)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerRunner:
    """Start `python main.py --cpu` on loopback with a base directory, post prompts, poll history.

    Use as a context manager: the server process is always terminated (then killed) on exit.
    """

    def __init__(self, comfyui_root: Path, base: Path, python: str = sys.executable, startup_timeout: float = 180,
                 extra_args: tuple[str, ...] = ()):
        self.root = Path(comfyui_root)
        self.base = Path(base)
        self.python = python
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.process = None
        self.log_path = self.base / "comfyui-server.log"

    def __enter__(self) -> "ServerRunner":
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        """Launch the server and wait until it answers /object_info."""
        command = [self.python, "main.py", "--cpu", "--base-directory", str(self.base), "--listen", "127.0.0.1",
                   "--port", str(self.port), "--disable-auto-launch", "--disable-api-nodes", *self.extra_args]
        self._log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(command, cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited during start-up (code {self.process.returncode}):\n{self.log()}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {self.startup_timeout}s:\n{self.log()}")

    def stop(self):
        """Terminate the server (kill after 20 s) and close its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict):
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def run(self, prompt: dict, extra_data: dict | None = None, timeout: float = 1800,
            poll_interval: float = 0.5) -> RunResult:
        """Queue `prompt` and wait for its history entry."""
        status, answer = self.post("/prompt", {"prompt": prompt, "client_id": "aid-tests",
                                               "extra_data": extra_data or {}})
        if status != 200:
            return RunResult("", False, error=answer)
        return self.wait(answer["prompt_id"], timeout, poll_interval)

    def wait(self, prompt_id: str, timeout: float = 1800, poll_interval: float = 0.5) -> RunResult:
        """Poll /history until the queued prompt `prompt_id` has finished (interrupting it after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history:
                entry = history[prompt_id]
                status_info = entry.get("status", {})
                messages = status_info.get("messages", [])
                failure = next((data for event, data in messages
                                if event in ("execution_error", "execution_interrupted")), None)
                return RunResult(prompt_id, status_info.get("status_str") == "success",
                                 outputs=entry.get("outputs", {}), error=failure, messages=messages)
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI stopped while running a prompt:\n{self.log()[-4000:]}")
            time.sleep(poll_interval)
        self.post("/interrupt", {})
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")
