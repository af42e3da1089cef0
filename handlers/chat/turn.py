"""One turn of the chat, from an incoming message to a streamed answer.

Owns the order of things: cut history back on an edit, prepare attachments,
enforce the per-message image limit, compose the question (presets; a task
chosen before any image waits for the next message that brings some), build the
request within the model's limits, stream the answer, and remember it — even a
partial one cut short by the stop button or a failure.

Knows nothing of Chainlit: `respond` yields `Progress` (long work as it goes,
`handlers.core.progress`), `Notice`s (things to tell the person, as translation
keys) and answer text, and raises `UserFacingError`s; `chainlit_app.py`
renders them. An answer cut at the length limit can be continued
(`continue_answer`): the model is asked to go on from where it stopped, in the
same answer.

A count (`/count`) streams JSON, not text: it yields `CountStatus` (a status
to show while it arrives, and what to keep if stopped) and then one `Final`
answer (the table, with its CSV) instead.

What a count's turn remembers is what the answer shows — the rendered table,
or the model's text as written when it was not a count — never the JSON
behind it: a follow-up then reads what the person read ("the second row"),
is not nudged to answer in JSON itself, and a chat resumed from history
(which has only the shown text) sends the model the same bytes as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from handlers.chat.attachments import (
    Limits,
    Options,
    Prepared,
    Upload,
    prepare_links,
    prepare_uploads,
    source_key,
)
from handlers.chat.conversation import Conversation, Request, Turn
from handlers.chat.counting import CSV_NAME, Attachment, CountStatus, CountStream, Final
from handlers.chat.counting import RESPONSE_FORMAT as COUNT_FORMAT
from handlers.chat.history import PreparedStore
from handlers.chat.llm import ModelClient, StreamResult
from handlers.chat.tokens import TokenCounter
from handlers.chat.uploads import EarlyPreparations
from handlers.core.errors import ModelRejected, PromptTooLong, RequestRefused
from handlers.core.i18n import is_chinese
from handlers.core.progress import Board, Progress
from handlers.core.prompts import LANGUAGE_NAMES, PRESET_IDS, preset_instruction, system_prompt
from handlers.core.settings import ANSWER_LANGUAGES, Settings
from handlers.media.bundle import ImagePart
from handlers.media.links import find_image_links

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    level: Literal["info", "warning"] = "info"
    images: tuple[ImagePart, ...] = ()  # e.g. the frames sampled from a video, to show
    about: str | None = None  # the `Progress.id` of the work this notice ends
    continues: str | None = None  # an answer (turn id) the person may ask to continue


@dataclass(frozen=True)
class Incoming:
    id: str
    text: str
    command: str | None = None
    uploads: Sequence[Upload] = ()


@dataclass(frozen=True)
class Usage:
    """A request's prompt as the app counted it and as vLLM reported it."""

    counted: int
    reported: int | None
    cached: int | None


@dataclass
class ChatSession:
    """Per-chat state; dropped when the chat ends."""

    ui_language: str = "en-US"
    answer_language: str = "auto"
    thread_id: str | None = None  # where its prepared images are kept, if history is on
    conversation: Conversation = field(default_factory=Conversation)
    last_usage: Usage | None = None
    awaiting: str | None = None  # a task chosen before any image: the next images get its preset

    def choose_answer_language(self, value: object) -> None:
        """Take the answer language picked in the chat settings. The browser can
        send anything: a value the app does not offer is refused, and the
        current language kept."""
        if value not in ANSWER_LANGUAGES:
            raise RequestRefused(
                "error.unknown_answer_language", choices=", ".join(ANSWER_LANGUAGES)
            )
        self.answer_language = value


@dataclass
class Assistant:
    """App-wide services, built once at start-up."""

    settings: Settings
    client: ModelClient
    counter: TokenCounter
    store: PreparedStore | None = None
    early: EarlyPreparations | None = None  # photos prepared as their uploads arrived

    async def respond(
        self, chat: ChatSession, incoming: Incoming
    ) -> AsyncGenerator[Progress | Notice | str | CountStatus | Final, None]:
        self._check_length(incoming.text)
        incoming = _with_awaited_task(chat, incoming)
        conversation = chat.conversation
        edited = conversation.cut_back_to(incoming.id)
        self._check_chat_size(conversation)
        board = Board()
        found: list[tuple[tuple[ImagePart, ...], list[Notice]]] = []
        async for progress in board.follow(self._images_for(incoming, edited, board), found):
            yield progress
        parts, notices = found[0]
        parts, notices = self._within_chat_images(conversation, parts, notices)
        for notice in notices:
            yield notice
        text = compose_question(incoming.text, incoming.command, has_images=bool(parts))
        if not text and not parts:
            return  # only refused files: their notices said everything
        if incoming.command and not parts and not conversation.image_count():
            chat.awaiting = incoming.command  # e.g. a starter, clicked on the empty chat
            yield Notice(f"notice.awaiting.{incoming.command}")
            return
        if parts or incoming.command:
            chat.awaiting = None
        conversation.add_user(incoming.id, text, parts)
        if self.store and chat.thread_id:
            await asyncio.to_thread(self.store.save, chat.thread_id, incoming.id, text, parts)
        # Off the event loop, like images: a long history takes a while to tokenize
        # (docs/benchmarks.md, "Load", "Not covered: long conversations").
        request = await asyncio.to_thread(self._build_request, chat)
        for notice in _view_notices(request.newly_hidden, request.newly_dropped):
            yield notice
        answer: AsyncIterator[Notice | str | CountStatus | Final]
        if incoming.command == "count":
            names = [part.image.name for part in conversation.latest_images()]
            answer = self._stream_count(
                chat, incoming.id, request, CountStream(names, chat.ui_language)
            )
        else:
            answer = self._stream_answer(chat, incoming.id, request)
        async for piece in answer:
            yield piece

    async def continue_answer(
        self, chat: ChatSession, answer_id: str
    ) -> AsyncGenerator[Notice | str, None]:
        """The rest of answer `answer_id`, cut at the length limit: the same request
        with the answer so far as the start of the model's reply. Only the chat's
        last answer can go on (a later message has moved past it)."""
        turns = chat.conversation.turns
        if not turns or turns[-1].id != answer_id or turns[-1].role != "assistant":
            raise RequestRefused("error.continue_moved_on")
        request = await asyncio.to_thread(self._build_request, chat, continuing=True)
        async for piece in self._stream_answer(chat, answer_id, request):
            yield piece

    async def _images_for(
        self, incoming: Incoming, edited: Turn | None, board: Board
    ) -> tuple[tuple[ImagePart, ...], list[Notice]]:
        """The message's images, from its files and image links; an edited message
        keeps the images it had."""
        reused = edited.images if edited else ()
        if reused and {source_key(p) for p in reused} == {u.key for u in incoming.uploads}:
            return reused, []
        limits, options = self._limits(), _options_for(incoming, self.settings.max_page_ranges)
        files = await prepare_uploads(incoming.uploads, limits, options, self.early, board)
        links = await prepare_links(
            find_image_links(incoming.text),
            incoming.id,
            budget=limits.max_images - len(files.parts),
            max_bytes=limits.max_image_bytes,
            board=board,
        )
        return tuple(files.parts + links.parts), _attachment_notices(
            files, links, limits.max_images
        )

    def _check_length(self, text: str) -> None:
        """Refuse a message too long to ever fit, before anything reads it."""
        if len(text) > self.settings.max_message_chars:
            raise RequestRefused(
                "error.message_too_long", length=len(text), limit=self.settings.max_message_chars
            )

    def _check_chat_size(self, conversation: Conversation) -> None:
        """A chat's memory is bounded: past MAX_CHAT_MESSAGES, a new chat is needed."""
        said = sum(1 for turn in conversation.turns if turn.role == "user")
        if said >= self.settings.max_chat_messages:
            raise RequestRefused("error.chat_too_long", limit=self.settings.max_chat_messages)

    def _within_chat_images(
        self, conversation: Conversation, parts: tuple[ImagePart, ...], notices: list[Notice]
    ) -> tuple[tuple[ImagePart, ...], list[Notice]]:
        """A message's images, unless they would take the chat past MAX_CHAT_IMAGES:
        then none of them (the text still goes), and the person is told why."""
        limit = self.settings.max_chat_images
        if not parts or conversation.image_count() + len(parts) <= limit:
            return parts, notices
        names = ", ".join(dict.fromkeys(part.image.name for part in parts))
        return (), [
            *notices,
            Notice("notice.chat_image_limit", {"limit": limit, "names": names}, "warning"),
        ]

    def _limits(self) -> Limits:
        return Limits(
            max_images=self.settings.max_images_per_request,
            max_image_bytes=self.settings.max_upload_bytes,
            max_media_bytes=self.settings.max_media_bytes,
            max_video_seconds=self.settings.max_video_seconds,
            max_video_pixels=self.settings.max_video_pixels,
        )

    def _build_request(self, chat: ChatSession, *, continuing: bool = False) -> Request:
        ui_language = LANGUAGE_NAMES["zh" if is_chinese(chat.ui_language) else "en"]
        system = system_prompt(chat.answer_language, ui_language)
        try:
            return chat.conversation.build_request(
                system,
                self.counter,
                max_images=self.settings.max_images_per_request,
                prompt_budget=self.settings.prompt_budget,
                system_first=self.settings.system_first,
                continuing=continuing,
            )
        except PromptTooLong:
            if not continuing:  # the question that does not fit is not kept
                chat.conversation.turns.pop()
            raise

    async def _stream_answer(
        self, chat: ChatSession, turn_id: str, request: Request
    ) -> AsyncIterator[Notice | str]:
        """Stream and remember an answer to turn `turn_id` — or, for a request
        that continues one, more of answer `turn_id`."""
        result = StreamResult()
        pieces: list[str] = []
        answer_id = turn_id if request.continues else f"{turn_id}:answer"
        try:
            async for piece in self.client.stream(
                request.messages, result, continues=request.continues
            ):
                pieces.append(piece)
                yield piece
        except ModelRejected:
            if not pieces and not request.continues:  # it would poison every later turn
                chat.conversation.cut_back_to(turn_id)
            raise
        finally:  # also on stop (CancelledError) and failures: keep what was said
            chat.conversation.add_assistant(answer_id, "".join(pieces))
        chat.last_usage = _usage(request, result)
        if result.truncated:
            yield Notice(
                "notice.truncated",
                {"max_tokens": self.settings.max_tokens},
                "warning",
                continues=answer_id,
            )

    async def _stream_count(
        self, chat: ChatSession, turn_id: str, request: Request, counting: CountStream
    ) -> AsyncIterator[Notice | CountStatus | Final]:
        """A count: structured output, a status while it streams, then the table."""
        result = StreamResult()
        outcome = None
        yield CountStatus(counting.status(), kept="")
        try:
            async for piece in self.client.stream(
                request.messages, result, response_format=COUNT_FORMAT
            ):
                counting.add(piece)
                yield CountStatus(counting.status(), kept=counting.as_written())
            outcome = counting.finish(
                truncated=result.truncated, max_tokens=self.settings.max_tokens
            )
        except ModelRejected:
            if not counting.raw:
                chat.conversation.cut_back_to(turn_id)
            raise
        finally:  # as for any answer: what it shows is what the chat remembers
            kept = outcome.text if outcome else counting.as_written()
            chat.conversation.add_assistant(f"{turn_id}:answer", kept)
        chat.last_usage = _usage(request, result)
        files = (Attachment(CSV_NAME, "text/csv", outcome.csv),) if outcome.csv else ()
        yield Final(outcome.text, files)
        if outcome.notice:
            yield Notice(outcome.notice, outcome.params, "warning")


def _usage(request: Request, result: StreamResult) -> Usage:
    """Logged per turn: a count off vLLM's means the budget is wrong, and few cached
    tokens on a follow-up mean the prompt's prefix changed."""
    usage = Usage(request.prompt_tokens, result.prompt_tokens, result.cached_tokens)
    log.info("prompt tokens: counted %d, vLLM %s, from its cache %s", *vars(usage).values())
    if usage.reported is not None and usage.reported != usage.counted:
        log.warning("the app counted %d prompt tokens, vLLM %d", usage.counted, usage.reported)
    return usage


def compose_question(text: str, command: str | None, *, has_images: bool) -> str:
    """The text sent to the model: a preset's instruction, then the person's words.

    Images with no words at all are a request to describe them.
    """
    text = text.strip()
    if command in PRESET_IDS:
        instruction = preset_instruction(command)
        return f"{instruction}\n\n{text}" if text else instruction
    if not text and has_images:
        return preset_instruction("describe")
    return text


def _with_awaited_task(chat: ChatSession, incoming: Incoming) -> Incoming:
    """A message with files or links and no task of its own, after a task was chosen
    with no image (a starter, or a `/` command alone): it gets that task's preset."""
    if (
        chat.awaiting
        and not incoming.command
        and (incoming.uploads or find_image_links(incoming.text))
    ):
        return replace(incoming, command=chat.awaiting)
    return incoming


def _options_for(incoming: Incoming, max_page_ranges: int) -> Options:
    """Pages named in the question ("pages 2-4", "第3页"); tiles when reading small print."""
    return Options(incoming.text, max_page_ranges, tile=incoming.command == "read")


def _attachment_notices(files: Prepared, links: Prepared, limit: int) -> list[Notice]:
    notices = [Notice(r.key, r.params, "warning") for r in files.refused + links.refused]
    for sampled in files.sampled:
        about = source_key(sampled.parts[0]) if sampled.parts else None
        notices.append(
            Notice(
                sampled.bundle.note_key,
                sampled.bundle.note_params,
                images=sampled.parts,
                about=about,
            )
        )
    if left_out := files.left_out + links.left_out:
        notices.append(
            Notice(
                "notice.too_many_images", {"limit": limit, "names": ", ".join(left_out)}, "warning"
            )
        )
    return notices


def _view_notices(hidden: tuple[str, ...], dropped: int) -> list[Notice]:
    notices = []
    if hidden:
        notices.append(Notice("notice.images_out_of_view", {"names": ", ".join(hidden)}))
    if dropped:
        notices.append(Notice("notice.turns_dropped", {"count": dropped}))
    return notices


async def start_assistant(settings: Settings, store: PreparedStore | None = None) -> Assistant:
    """Build the app-wide services; the tokenizer loads in a thread (it is slow:
    docs/benchmarks.md, "Smaller measurements")."""
    counter = await asyncio.to_thread(TokenCounter)
    early = EarlyPreparations(settings.max_upload_bytes)
    return Assistant(settings, ModelClient(settings), counter, store, early)
