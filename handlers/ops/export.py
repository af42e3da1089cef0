"""Rated answers as JSON Lines, for evaluating the model offline.

One line per assistant answer that someone rated with thumbs up (1) or down (0):

    {"thread_id", "user", "question_id", "question", "images": [...],
     "answer_id", "answer", "rating", "comment", "time"}

`question` is the person's last message before the answer. `images` are the
images the person sent in that thread up to and including the question, oldest
first, each as {"id", "name", "mime", "url", "object_key", "message_id"}: a
follow-up question usually refers to an earlier photo. `url` is the app's
owner-only file route; `object_key` is the file's path under `data_dir/files`.
`time` is when the answer was created (UTC, ISO 8601).

It only reads what Chainlit's data layer wrote; `ensure_schema` runs first so a
fresh install exports nothing instead of failing.

    python -m handlers.export [--out FILE]     (default: standard output)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TextIO

from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from handlers.core.message_kinds import ANSWER_KIND
from handlers.core.settings import SettingsError, load_settings
from handlers.storage.database import (
    DatabaseUrlError,
    database_url,
    elements,
    ensure_schema,
    feedbacks,
    make_engine,
    steps,
    threads,
)

# Chainlit 2.12's thumbs rate the `on_message` run step, the parent of the app's
# answer and of its notices; a rating may also sit on an answer itself (the API
# allows it). Which children are answers is in their metadata ("kind").
_RATED = (
    select(
        steps.c.threadId.label("thread_id"),
        threads.c.userIdentifier.label("user"),
        steps.c.id.label("answer_id"),
        steps.c.output.label("answer"),
        feedbacks.c.value.label("rating"),
        feedbacks.c.comment,
        steps.c.createdAt.label("time"),
        steps.c.metadata,
        (steps.c.id == feedbacks.c.forId).label("rated_itself"),
    )
    .select_from(feedbacks)
    .join(steps, or_(steps.c.id == feedbacks.c.forId, steps.c.parentId == feedbacks.c.forId))
    .join(threads, threads.c.id == steps.c.threadId)
    .where(steps.c.type == "assistant_message")
    .order_by(steps.c.createdAt, steps.c.id)
)


def _is_rated_answer(row: Any) -> bool:
    return bool(row["rated_itself"]) or (row["metadata"] or {}).get("kind") == ANSWER_KIND


async def rated_answers(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rated = [row for row in (await conn.execute(_RATED)).mappings() if _is_rated_answer(row)]
        thread_ids = sorted({row["thread_id"] for row in rated})
        questions = await _questions(conn, thread_ids)
        images = await _images(conn, thread_ids)
    return [_record(dict(row), questions[row["thread_id"]], images) for row in rated]


def write_jsonl(records: list[dict[str, Any]], out: TextIO) -> None:
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


async def _questions(
    conn: AsyncConnection, thread_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """The person's messages per thread, oldest first."""
    query = (
        select(steps.c.id, steps.c.threadId, steps.c.output, steps.c.createdAt)
        .where(steps.c.type == "user_message", steps.c.threadId.in_(thread_ids))
        .order_by(steps.c.createdAt, steps.c.id)
    )
    by_thread: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in (await conn.execute(query)).mappings():
        by_thread[row["threadId"]].append(dict(row))
    return by_thread


async def _images(conn: AsyncConnection, thread_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Image references per message id."""
    query = select(
        elements.c.id,
        elements.c.name,
        elements.c.mime,
        elements.c.url,
        elements.c.objectKey,
        elements.c.forId,
    ).where(elements.c.type == "image", elements.c.threadId.in_(thread_ids))
    by_message: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in (await conn.execute(query.order_by(elements.c.id))).mappings():
        reference = {"id": row["id"], "name": row["name"], "mime": row["mime"], "url": row["url"]}
        by_message[row["forId"]].append(
            {**reference, "object_key": row["objectKey"], "message_id": row["forId"]}
        )
    return by_message


def _record(
    answer: dict[str, Any], messages: list[dict[str, Any]], images: dict[str, list]
) -> dict[str, Any]:
    asked = [
        message for message in messages if (message["createdAt"] or "") <= (answer["time"] or "")
    ]
    question = asked[-1] if asked else None
    return {
        "thread_id": answer["thread_id"],
        "user": answer["user"],
        "question_id": question["id"] if question else None,
        "question": question["output"] if question else None,
        "images": [image for message in asked for image in images.get(message["id"], [])],
        "answer_id": answer["answer_id"],
        "answer": answer["answer"],
        "rating": answer["rating"],
        "comment": answer["comment"],
        "time": answer["time"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handlers.export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    try:
        records = asyncio.run(_load(database_url(load_settings())))
        if args.out:
            with open(args.out, "w", encoding="utf-8") as out:
                write_jsonl(records, out)
        else:
            write_jsonl(records, sys.stdout)
    except (SettingsError, DatabaseUrlError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as error:
        print(f"error: {getattr(error, 'orig', None) or error}", file=sys.stderr)
        return 1
    print(f"exported {len(records)} rated answers", file=sys.stderr)
    return 0


async def _load(url: str) -> list[dict[str, Any]]:
    await ensure_schema(url)
    engine = make_engine(url)
    try:
        return await rated_answers(engine)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
