"""The `replay` backend: a queue of hand-written patches, one per iteration, applied with `git apply`.

The queue position is the iteration number, which the orchestrator records, so an iteration redone
after a crash proposes the same patch again. Replay spends nothing: its cost is a known 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agents.transcript import Transcript
from orchestrator.core.config import BackendConfig, parse_options
from orchestrator.core.contracts import Check, Proposal, ProposalRequest, ProposalStatus
from orchestrator.core.errors import ConfigError, NothingToPropose
from orchestrator.core.proc import GIT_SAFE, redact, run_process, secret_values


class ReplayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patches: Path


def patch_summary(text: str) -> str:
    """The patch's own description: a format-patch Subject/body, or the lines before the first diff."""
    head = text.split("\ndiff --git", 1)[0] if not text.startswith("diff --git") else ""
    lines = [ln for ln in head.splitlines() if ln.strip() and not ln.startswith(("From ", "Date: ", "From: ", "---"))]
    return "\n".join(ln.removeprefix("Subject: ").removeprefix("[PATCH] ") for ln in lines).strip()


class ReplayAgent:
    def __init__(self, config: BackendConfig, config_dir: Path):
        self.config = config
        self.where = f"{config.where}.options.patches"
        opts: ReplayOptions = parse_options(ReplayOptions, config.options, f"{config.where}.options")
        self.folder = (config_dir / opts.patches.expanduser()).resolve()
        if not self.folder.is_dir():
            what = "is not a folder" if self.folder.exists() else "does not exist"
            raise ConfigError(f"{self.where}: {self.folder} {what}")

    def queue(self) -> list[Path]:
        return sorted(self.folder.glob("*.patch"))

    def propose(self, request: ProposalRequest) -> Proposal:
        start = time.monotonic()
        queue = self.queue()
        if not queue:  # a queue that was never filled is a mistake; one that ran out is the loop's end
            raise ConfigError(f"{self.where}: no *.patch files in {self.folder}; nothing to propose")
        if request.iteration < 1 or request.iteration > len(queue):
            raise NothingToPropose(f"the replay queue has {len(queue)} patches; none left for iteration {request.iteration}")
        patch = queue[request.iteration - 1]
        text = patch.read_text()
        argv = ["git", *GIT_SAFE, "apply", "--whitespace=nowarn", str(patch)]
        if request.sandbox is not None:  # like any backend's command: inside the run's sandbox
            argv = request.sandbox.wrap(argv, visible=[patch])
        res = run_process(argv, cwd=request.worktree, timeout_s=request.timeout_s, redact_output=False)
        Transcript(request.transcript_path, {**os.environ, **request.env}, request.env.values()).write(
            "replay", patch=patch.name, returncode=res.returncode, stderr=res.stderr[-2000:])
        # The patch is named where a backend's message is (learnings, the commit, the report); it is no model.
        summary = "\n\n".join(filter(None, [patch_summary(text), f"Patch file: {patch.name}"]))
        common = dict(summary=summary, cost_usd=0.0, transcript=request.transcript_path,
                      duration_s=time.monotonic() - start, backend="replay", model="")
        if not res.ok:
            hidden = secret_values({**os.environ, **request.env}, request.env.values())
            said = redact(res.stderr.strip(), hidden)[-500:]  # cut after redacting: no half secret survives
            return Proposal(ProposalStatus.ERROR, error=f"git apply {patch.name} failed: {said}",
                            error_class="bad_output", **common)
        return Proposal(ProposalStatus.OK, **common)

    def check(self) -> list[Check]:
        n = len(self.queue()) if self.folder.is_dir() else 0
        return [Check("replay patches", n > 0, f"{n} patches in {self.folder}")]
