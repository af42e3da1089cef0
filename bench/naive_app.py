"""The naive client that bench/load.py compares the app against. Not part of the app.

What a minimal Chainlit vision chat typically looks like: the first attachment
is read whole and base64-encoded as it was uploaded (a 12 MP photo goes out as
~6 MB of base64), and the *blocking* `openai.OpenAI` client streams the answer
inside the async `on_message`, so while it waits for the model it holds the
event loop of the whole server. No history, no limits, no error handling.

    VLLM_BASE_URL=http://127.0.0.1:8000/v1 .venv/bin/chainlit run bench/naive_app.py --headless --port 8002

Written that way on purpose, to be measured; do not copy it.
"""

import base64
import os

import chainlit as cl
import openai

client = openai.OpenAI(
    base_url=os.environ.get("VLLM_BASE_URL") or "http://127.0.0.1:8000/v1",
    api_key=os.environ.get("VLLM_API_KEY") or "EMPTY",
)
MODEL = os.environ.get("VLLM_MODEL") or "mistralai/Pixtral-12B-2409"


@cl.on_message
async def on_message(message: cl.Message) -> None:
    content = [{"type": "text", "text": message.content}]
    files = [element for element in message.elements or [] if getattr(element, "path", None)]
    if files:
        with open(files[0].path, "rb") as file:
            encoded = base64.b64encode(file.read()).decode()
        content.append(
            {"type": "image_url", "image_url": {"url": f"data:{files[0].mime};base64,{encoded}"}}
        )
    answer = cl.Message(content="")
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=1024, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            await answer.stream_token(chunk.choices[0].delta.content)
    await answer.send()
