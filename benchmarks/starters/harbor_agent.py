"""The agent autoharness improves on Terminal-Bench 2.0 through harbor (a starter: edit freely, keep the class name).

It starts as Terminus-2, harbor's reference terminal agent, with its prompt kept in this repo
(`harbor_prompt.txt`) so the prompt, and anything else you override here, is yours to change. harbor
loads it by import path (`[benchmark.options] agent`), with this repo on PYTHONPATH; the model comes
from `[benchmark.options] model`.
"""

from pathlib import Path

from harbor.agents.terminus_2 import Terminus2

PROMPT = Path(__file__).with_name("harbor_prompt.txt")


class Agent(Terminus2):
    @staticmethod
    def name() -> str:
        return "autoharness-agent"

    def version(self) -> str | None:
        return "0.1.0"

    def _get_prompt_template_path(self) -> Path:
        # The template is formatted with {instruction} and {terminal_state}; double any other braces.
        return PROMPT
