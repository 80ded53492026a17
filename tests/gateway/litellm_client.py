"""Run inside the LiteLLM venv (see litellmkit.py), never imported by the suite: ``litellm.completion``
calls against the gateway, printed as one JSON line for the test to read. One process makes all
the calls of a test module, because importing LiteLLM takes seconds.

Argument: a JSON list of {"api_base", "api_key", "model", "messages", "stream"}.
"""
import importlib.metadata
import json
import sys

import litellm


def call(args: dict) -> dict:
    out: dict = {"version": importlib.metadata.version("litellm")}
    try:
        if args["stream"]:
            pieces, usage = [], None
            for chunk in litellm.completion(model=args["model"], api_base=args["api_base"],
                                            api_key=args["api_key"], messages=args["messages"],
                                            stream=True, stream_options={"include_usage": True},
                                            num_retries=0):
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                if getattr(chunk, "usage", None):
                    usage = chunk.usage.model_dump()
            out.update(text="".join(pieces), chunks=len(pieces), usage=usage)
        else:
            reply = litellm.completion(model=args["model"], api_base=args["api_base"],
                                       api_key=args["api_key"], messages=args["messages"],
                                       num_retries=0)
            out.update(text=reply.choices[0].message.content, usage=reply.usage.model_dump(),
                       finish_reason=reply.choices[0].finish_reason)
    except Exception as exc:   # the test shows LiteLLM's own class and message
        out.update(error=type(exc).__name__, message=str(exc)[:2000],
                   status=getattr(exc, "status_code", None))
    return out


print(json.dumps([call(args) for args in json.loads(sys.argv[1])]))
