"""The agent autoharness improves on BIRD-Interact (a-interact), a starter: edit freely, keep `build_agent`.

autoharness serves BIRD-Interact-ADK's system-agent endpoint with this module in place of the ADK's own
`system_agent.agent`: the ADK runtime calls `build_agent(mode)` and runs the agent it returns. The ADK
checkout is on the import path, so its tools, callbacks (the bird-coin budget) and model settings are
reused here; the model is `SYSTEM_AGENT_MODEL` from the checkout's `.env`.
"""

from google.adk import Agent
from google.genai import types
from shared.config import settings
from shared.llm import build_adk_model
from system_agent.callbacks import after_tool_callback, before_model_callback, before_tool_callback
from system_agent.tools import get_ainteract_tools

INSTRUCTION = """You answer a user's data question by writing one PostgreSQL query for their database.
The question may be ambiguous and may rely on domain knowledge defined outside the schema.

Every tool call costs bird-coins from a fixed budget; the task ends when the budget is spent.
Costs: execute_sql 1, get_schema 1, get_all_column_meanings 1, get_column_meaning 0.5,
get_all_external_knowledge_names 0.5, get_knowledge_definition 0.5, get_all_knowledge_definitions 1,
ask_user 2, submit_sql 3.

How to work:
1. Read the schema, then only the column meanings and knowledge definitions the question touches.
2. When the question can be read in more than one way, ask the user one precise question at a time.
3. Try the query with execute_sql, then submit it with submit_sql.
4. If a submission fails and budget remains, find the mistake and submit again.
5. After phase 1 passes, the user asks a follow-up question: solve it the same way.
"""


def build_agent(mode: str = "a-interact") -> Agent:
    if mode != "a-interact":
        raise ValueError(f"this agent is built for a-interact, not {mode!r}")
    return Agent(
        model=build_adk_model(settings.system_agent_model),
        name="bird_interact_agent",
        description="Text-to-SQL agent for BIRD-Interact a-interact.",
        instruction=INSTRUCTION,
        tools=get_ainteract_tools(),
        before_model_callback=before_model_callback,
        before_tool_callback=before_tool_callback,
        after_tool_callback=after_tool_callback,
        generate_content_config=types.GenerateContentConfig(temperature=0.0),
    )
