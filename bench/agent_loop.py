"""An agent's round trip with a small model: call -> result -> answer, over ten varied prompts.

    .venv/bin/python -m bench.agent_loop [--artifact A] [--api chat,responses] [--temp 0]

Each case offers one function tool and asks something only it answers. The model must call it
(first request), then, given the tool's result with the tools still offered and tool_choice
auto (what an agent framework sends; no extra instruction), answer in text that holds the
result's fact (second request). A case fails if the first answer calls nothing, or the second
calls a tool again, writes a call as text, or misses the fact. Without --artifact an artifact of
Qwen2.5-Coder-0.5B-Instruct is built into build/ (tests/instruct_model.py fetches the GGUF).
Prints one line per case and writes bench/results/agent-loop-<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from bench import machine, servers

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    question: str
    tool: str
    parameters: dict[str, str]  # argument name -> JSON type
    result: dict[str, Any]  # what the tool returns
    facts: tuple[str, ...]  # the answer must hold one of these (case-insensitive)


CASES = [
    Case("What is the weather like in Paris right now?", "get_weather", {"city": "string"},
         {"temperature_c": 18, "sky": "cloudy"}, ("18",)),
    Case("What time is it in Tokyo?", "get_time", {"timezone": "string"},
         {"time": "14:05"}, ("14:05", "2:05")),
    Case("How much is 100 US dollars in euros?", "convert_currency",
         {"amount": "number", "from_currency": "string", "to_currency": "string"},
         {"result": 92.4, "currency": "EUR"}, ("92.4",)),
    Case("What's Apple's stock price today?", "get_stock_price", {"symbol": "string"},
         {"symbol": "AAPL", "price": 231.5}, ("231.5",)),
    Case("How many people live in Canada?", "get_population", {"country": "string"},
         {"population": "40.1 million"}, ("40.1",)),
    Case("Is flight BA117 on time?", "lookup_flight", {"flight_number": "string"},
         {"status": "delayed", "delay_minutes": 45}, ("45", "delay")),
    Case("Please add 1234 and 5678 with the calculator.", "add_numbers",
         {"a": "number", "b": "number"}, {"sum": 6912}, ("6912", "6,912")),
    Case("Where is my order A1234?", "get_order_status", {"order_id": "string"},
         {"status": "shipped", "arrives": "Tuesday"}, ("shipped", "tuesday")),
    Case("How far is it from Berlin to Munich by road?", "get_distance",
         {"from_city": "string", "to_city": "string"}, {"km": 585}, ("585",)),
    Case("Find me a recipe with mushrooms.", "search_recipes", {"ingredient": "string"},
         {"recipes": ["Creamy mushroom risotto"]}, ("risotto",)),
]


def tool_schema(case: Case) -> dict[str, Any]:
    """The case's tool in chat completions' shape."""
    properties = {name: {"type": kind} for name, kind in case.parameters.items()}
    return {"type": "function", "function": {
        "name": case.tool, "description": f"{case.tool.replace('_', ' ').capitalize()}.",
        "parameters": {"type": "object", "properties": properties,
                       "required": list(case.parameters)}}}


@dataclass
class Outcome:
    question: str
    called: str | None  # the tool the first answer called
    answer: str  # the second answer's text (the first's when it called nothing)
    called_again: bool  # the second answer called a tool
    ok: bool


def call_shaped(text: str) -> bool:
    return '"name"' in text or "<tool_call>" in text or '"arguments"' in text


def judge(case: Case, called: str | None, answer: str, called_again: bool) -> Outcome:
    ok = called == case.tool and not called_again and not call_shaped(answer) and \
        any(fact.lower() in answer.lower() for fact in case.facts)
    return Outcome(case.question, called, answer, called_again, ok)


def chat_round_trip(client: openai.OpenAI, case: Case, **sampling: Any) -> Outcome:
    tools = [tool_schema(case)]
    history: list[Any] = [{"role": "user", "content": case.question}]
    first = client.chat.completions.create(model="m", messages=history, tools=tools,
                                           max_tokens=120, **sampling)
    calls = first.choices[0].message.tool_calls or []
    if not calls:
        return judge(case, None, first.choices[0].message.content or "", False)
    history.append(first.choices[0].message.model_dump(exclude_none=True))
    history += [{"role": "tool", "tool_call_id": c.id, "content": json.dumps(case.result)}
                for c in calls]
    second = client.chat.completions.create(model="m", messages=history, tools=tools,
                                            max_tokens=120, **sampling)
    message = second.choices[0].message
    return judge(case, calls[0].function.name, message.content or "", bool(message.tool_calls))


def responses_round_trip(client: openai.OpenAI, case: Case, **sampling: Any) -> Outcome:
    sampling = dict(sampling)
    if "seed" in sampling:  # not a Responses field: the SDK sends it as an extra
        sampling["extra_body"] = {"seed": sampling.pop("seed")}
    function = tool_schema(case)["function"]
    tools: list[Any] = [{"type": "function", **function, "strict": False}]
    items: list[Any] = [{"role": "user", "content": case.question}]
    first = client.responses.create(model="m", input=items, tools=tools,
                                    max_output_tokens=120, **sampling)
    calls = [item for item in first.output if item.type == "function_call"]
    if not calls:
        return judge(case, None, first.output_text, False)
    items += [item.model_dump(exclude_none=True) for item in first.output]
    items += [{"type": "function_call_output", "call_id": c.call_id,
               "output": json.dumps(case.result)} for c in calls]
    second = client.responses.create(model="m", input=items, tools=tools,
                                     max_output_tokens=120, **sampling)
    again = any(item.type == "function_call" for item in second.output)
    return judge(case, calls[0].name, second.output_text, again)


ROUND_TRIPS = {"chat": chat_round_trip, "responses": responses_round_trip}


def run(url: str, api: str, show: bool = False, **sampling: Any) -> list[Outcome]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    outcomes = []
    for case in CASES:
        o = ROUND_TRIPS[api](client, case, **sampling)
        outcomes.append(o)
        if show:
            print(f"{api:9} {'ok ' if o.ok else 'BAD'} {o.question[:44]:44} "
                  f"{o.called or '-':16} {o.answer[:70]!r}{' (called again)' * o.called_again}",
                  flush=True)
    return outcomes


def qwen_artifact(out: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from instruct_model import instruct_model

    gguf = instruct_model(Path.home() / ".cache")
    subprocess.run([sys.executable, "-m", "bundler", "build", str(gguf), "-o", str(out),
                    "--force"], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", type=Path)
    parser.add_argument("--api", default="chat,responses")
    parser.add_argument("--temp", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=machine.physical_cores())
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" /
                        f"agent-loop-{datetime.date.today()}.json")
    args = parser.parse_args()
    artifact = args.artifact or qwen_artifact(REPO / "build" / "agent-loop.llamabundle")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as logs, \
            servers.launched(servers.ours(artifact, args.threads, 4096), Path(logs)) as server, \
            httpx.Client() as http:
        server.wait_ready(http)
        for api in args.api.split(","):
            outcomes = run(server.url, api, show=True, temperature=args.temp, seed=1)
            passed = sum(o.ok for o in outcomes)
            print(f"{api}: {passed}/{len(outcomes)} round trips answered from the result")
            results[api] = {"passed": passed, "cases": [asdict(o) for o in outcomes]}
    out = args.out
    out.write_text(json.dumps({"artifact": str(artifact), "temperature": args.temp,
                               "cpu": machine.cpu_model(), "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
