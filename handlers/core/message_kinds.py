"""The kinds of message the app stores, in each step's `metadata["kind"]`.

Written by the app as it sends (chainlit_app.py, `handlers/web/answer_view.py`) and
read back from the history by the chat (resume, `/download`) and by the ratings
export (`handlers/ops/export.py`), so the names live below both. The browser's
own messages never carry one (`handlers/web/message_guard.py` strips it).
"""

ANSWER_KIND = "answer"  # an assistant message that is the model's answer
DOWNLOAD_KIND = "download"  # a request for the chat download, and its reply
NOTICE_KIND = "notice"  # what the app says between answers (a refused file, what was sampled)
