"""The agent autoharness improves on tau2-bench (a starter: edit freely, keep the class name).

tau2 builds it as `Agent(tools=..., domain_policy=..., llm=..., llm_args=...)` and calls
`generate_next_message(message, state)` once per turn; the model and its arguments come from
`[benchmark.options]` (agent_llm, agent_llm_args). Everything here is yours to change: the
instructions, how the prompt is assembled, how tool results are handled.
"""

from tau2.agent.llm_agent import LLMAgent

INSTRUCTIONS = """
You are a customer service agent that helps the user according to the <policy> provided below.
In each turn you can either:
- Send a message to the user.
- Make a tool call.
You cannot do both at the same time.

Try to be helpful and always follow the policy. Always make sure you generate valid JSON only.
""".strip()


class Agent(LLMAgent):
    @property
    def system_prompt(self) -> str:
        return f"<instructions>\n{INSTRUCTIONS}\n</instructions>\n<policy>\n{self.domain_policy}\n</policy>"
