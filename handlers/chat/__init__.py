"""One chat, from a message to a streamed answer, with no Chainlit in it.

Owns: the turn (`turn.py`: `Assistant.respond` yields progress, notices and
text), a message's attachments and their image budget (`attachments.py`;
`uploads.py` prepares photos as they arrive), the chat's memory and the request
(`conversation.py`, `window.py`, `tokens.py`), the one boundary to vLLM
(`llm.py`), memory per session (`sessions.py`), what the model saw kept for a
resume (`history.py`), `/count` (`counting.py`, `count_table.py`), `/download`
(`download.py`) and the empty chat's starters (`welcome.py`).

May import: `handlers.media` and `handlers.core`. Must not: import storage,
services, web or ops, nor Chainlit or FastAPI (checked by `lint-imports`); what
it needs from them (a persisted thread, where an upload is stored) is handed in.
"""
