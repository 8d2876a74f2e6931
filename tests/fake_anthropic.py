"""A local stand-in for Anthropic's Messages API, so real Claude Code can run offline.

The "model" is a script the test writes into its prompt: a line `PLAN: [[tool, input], ...]`.
Each turn answers with the next tool call of the plan (counted by the tool results already
in the conversation), then with the text `DONE`. Requests without a plan (titles, probes)
get a short text. Every request is recorded, so a test can check what Claude Code sent the
model: that is where the memory it loaded shows up.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PLAN = re.compile(r"^PLAN: (\[.*\])\s*$", re.M)


def texts(content) -> list[str]:
    """The text blocks of a message's content (a string or a list of blocks)."""
    if isinstance(content, str):
        return [content]
    out = []
    for b in content:
        if b.get("type") == "text":
            out.append(b["text"])
        elif b.get("type") == "tool_result":
            out.extend(texts(b.get("content") or []))
    return out


def user_text(body: dict, first_only: bool = False) -> str:
    msgs = [m for m in body.get("messages", []) if m.get("role") == "user"]
    if first_only:
        msgs = msgs[:1]
    return "\n".join(t for m in msgs for t in texts(m["content"]))


def system_text(body: dict) -> str:
    s = body.get("system") or []
    return s if isinstance(s, str) else "\n".join(b.get("text", "") for b in s)


def tool_results(body: dict) -> list[dict]:
    return [
        b
        for m in body.get("messages", [])
        if m.get("role") == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]


def answer(body: dict) -> list[dict]:
    """The content blocks of the reply."""
    m = PLAN.search(user_text(body))
    if not m:
        return [{"type": "text", "text": "ok"}]
    plan = json.loads(m.group(1))
    step = len(tool_results(body))
    if step < len(plan):
        name, args = plan[step]
        return [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name, "input": args}]
    return [{"type": "text", "text": "DONE"}]


def sse(blocks: list[dict], model: str) -> bytes:
    """The reply as the streaming events the SDK parses."""
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    usage = {"input_tokens": 10, "output_tokens": 10}
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_{uuid.uuid4().hex[:20]}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                },
            },
        )
    ]
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": b["text"]}
        else:
            start = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
        events += [
            ("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": i}),
        ]
    events += [
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events)


class FakeAnthropic:
    """Serves on 127.0.0.1 on a free port until close(); `requests` holds every body."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet: the test reports what matters
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                with outer.lock:
                    outer.requests.append({"path": self.path, "body": body})
                if not self.path.startswith("/v1/messages") or self.path.startswith("/v1/messages/count"):
                    self._json({"input_tokens": 10} if "count" in self.path else {})
                    return
                blocks = answer(body)
                model = body.get("model", "claude-test")
                if body.get("stream"):
                    data = sse(blocks, model)
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    stop = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
                    self._json(
                        {
                            "id": f"msg_{uuid.uuid4().hex[:20]}",
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": blocks,
                            "stop_reason": stop,
                            "stop_sequence": None,
                            "usage": {"input_tokens": 10, "output_tokens": 10},
                        }
                    )

            def do_GET(self):
                self._json({}, 404)

            do_HEAD = do_GET

            def _json(self, obj, code=200):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sessions(self, marker: str) -> list[dict]:
        """The main-loop requests of the session whose prompt carries `marker`."""
        with self.lock:
            return [r["body"] for r in self.requests if marker in user_text(r["body"])]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
