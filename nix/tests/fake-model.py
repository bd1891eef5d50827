"""A scripted OpenAI-compatible model for the NixOS VM test (nix/tests/vm.nix).

POST /v1/chat/completions: when the last message is a tool result, the answer quotes that
result's content; otherwise the answer is a call of the `terminal` tool with
{"command": "echo sandboxed-$((6*7))"}. The final answer can therefore only contain
"sandboxed-42" if the command really ran: this model never computes 6*7. JSON or server-sent
events, as the request asks. GET /v1/models lists the one model.

Environment: FAKE_MODEL_API_KEY (when set, any other bearer key gets 401), FAKE_MODEL_LOG
(a file; each request body is appended to it as one JSON line).
Usage: python3 fake-model.py PORT   (listens on 127.0.0.1)
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake"
COMMAND = "echo sandboxed-$((6*7))"


def text_of(content):
    """A message's content as text (a string, or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def answer_for(request):
    """(message, finish_reason) for a chat request."""
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return {"role": "assistant", "content": "The command printed: " + text_of(last.get("content"))}, "stop"
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "terminal", "arguments": json.dumps({"command": COMMAND})},
    }
    return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"


USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def completion(message, finish):
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
    }


def chunks(message, finish, include_usage):
    """The chunks OpenAI streams for `message`: role first, then text or tool-call pieces."""

    def chunk(delta, finish_reason=None):
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    out = [chunk({"role": "assistant", "content": ""})]
    if message.get("tool_calls"):
        for i, call in enumerate(message["tool_calls"]):
            args = call["function"]["arguments"]
            head = {"index": i, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}
            out.append(chunk({"tool_calls": [head]}))
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    else:
        text = message["content"]
        for start in range(0, len(text), 16):
            out.append(chunk({"content": text[start:start + 16]}))
    out.append(chunk({}, finish))
    if include_usage:
        out.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                    "model": MODEL, "choices": [], "usage": USAGE})
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        key = os.environ.get("FAKE_MODEL_API_KEY")
        if key and self.headers.get("Authorization") != "Bearer " + key:
            self.send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
            return False
        return True

    def do_GET(self):
        if not self.authorized():
            return
        if self.path.rstrip("/") == "/v1/models":
            self.send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})
        else:
            self.send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.authorized():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send(404, {"error": {"message": "not found"}})
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self.send(400, {"error": {"message": "body is not JSON"}})
            return
        log = os.environ.get("FAKE_MODEL_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps(request) + "\n")
        message, finish = answer_for(request)
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            events = "".join("data: " + json.dumps(c) + "\n\n" for c in chunks(message, finish, include_usage))
            self.send(200, (events + "data: [DONE]\n\n").encode(), "text/event-stream")
        else:
            self.send(200, completion(message, finish))

    def log_message(self, fmt, *args):
        sys.stderr.write("fake-model: " + (fmt % args) + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
