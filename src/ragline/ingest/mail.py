"""Mail: a message (.eml), a mailbox (.mbox) and an Outlook message (.msg). A message is a
document titled by its subject, with its sender and date in the text and in meta; its text
part (or its HTML part as text) is the body; each attachment of a supported type is a
document of its own, placed at "attachment NAME".

    docs = load_eml(Blob("mail.eml", path=Path("mail.eml")))
    docs[0].title, docs[0].meta["from"], docs[0].meta["date"]
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable, Iterator
from email.message import EmailMessage
from typing import Any

from ragline.errors import IngestError, UnreadableFileError, missing_extra
from ragline.ingest.blob import Blob
from ragline.ingest.text_formats import html_to_text
from ragline.text import scrub
from ragline.types import Document

MAX_MESSAGES = 100_000  # a mailbox larger than this is read up to here (and says so)


def _message_document(name: str, headers: dict[str, str], body: str, where: str = "") -> Document:
    shown = [f"{k.title()}: {v}" for k, v in headers.items() if v]
    text = "\n".join(shown) + "\n\n" + body.strip()
    meta: dict[str, Any] = {k: v for k, v in headers.items() if v}
    if where:
        meta["sections"] = [[0, len(text), headers.get("subject", ""), where.rstrip(" ·")]]
    return Document.from_text(scrub(text).strip(), source=name,
                              title=headers.get("subject", ""), meta=meta)


def _attachment_documents(blob: Blob, subject: str, files: Iterable[tuple[str, bytes]],
                          where: str = "") -> Iterator[Document]:
    """The documents of a message's attachments that ragline can read; the others go to
    the blob's notes with the reason."""
    from ragline.ingest.loaders import read_blob  # the registry imports this module

    for filename, data in files:
        label = f"{where}attachment {filename}"
        try:
            docs = read_blob(blob.inner(f"{blob.name}/{filename}", data))
        except IngestError as e:
            blob.notes.append((f"{blob.name} ({label})", str(e).split(": ", 1)[-1]))
            continue
        for d in docs:
            yield _placed(d, blob.name, f"{subject} — {filename}" if subject else filename,
                          label)


def _placed(doc: Document, source: str, title: str, location: str) -> Document:
    """`doc` (read from inside another file) under that file, its passages placed there."""
    meta = dict(doc.meta)
    sections = meta.get("sections") or [[0, len(doc.text), "", ""]]
    meta["sections"] = [[s, e, t, f"{location} · {loc}" if loc else location]
                        for s, e, t, loc in sections]
    return Document(id=doc.id, source=source, text=doc.text, title=doc.title or title,
                    meta=meta)


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a bad encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        content, _ = html_to_text(content)
    return content


def _headers(msg: Any) -> dict[str, str]:
    def get(key: str) -> str:
        try:
            value = msg.get(key)
        except (ValueError, IndexError, TypeError):  # a header the policy cannot parse
            value = None
        return " ".join(str(value).split()) if value is not None else ""

    return {k: get(k) for k in ("subject", "from", "to", "date")}


def _read_message(blob: Blob, data: bytes, where: str = "") -> Iterator[Document]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    headers = _headers(msg)
    body = _body(msg)
    attachments = []
    for part in msg.iter_attachments():
        filename = part.get_filename() or ""
        payload = part.get_payload(decode=True)
        if filename and isinstance(payload, bytes) and payload:
            attachments.append((re.split(r"[\\/]", filename)[-1], payload))
    if body.strip() or any(headers.values()):
        yield _message_document(blob.name, headers, body, where)
    yield from _attachment_documents(blob, headers["subject"], attachments, where)


def load_eml(blob: Blob) -> list[Document]:
    docs = list(_read_message(blob, blob.read()))
    if not docs:
        raise UnreadableFileError(f"{blob.name}: no message text")
    return docs


def load_mbox(blob: Blob) -> Iterator[Document]:
    """Every message of a mailbox (messages start at a "From " line), placed at
    "message N"."""
    data = blob.read()
    if not data.startswith(b"From "):
        raise UnreadableFileError(f"{blob.name}: not an mbox file (it does not start with a "
                                  "'From ' line)")
    starts = [0] + [m.start() + 1 for m in re.finditer(rb"\n(?=From )", data)]
    for n, (a, b) in enumerate(zip(starts, starts[1:] + [len(data)], strict=True), 1):
        if n > MAX_MESSAGES:
            blob.notes.append((blob.name, f"only the first {MAX_MESSAGES} messages were read"))
            return
        raw = data[a:b].split(b"\n", 1)[-1]  # the "From " separator line is not a header
        raw = re.sub(rb"(?m)^>(>*From )", rb"\1", raw)  # mboxrd quoting
        yield from _read_message(blob, raw, where=f"message {n} · ")


OLE2_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


def load_msg(blob: Blob) -> list[Document]:
    """An Outlook .msg file (extract-msg): the message and its attachments."""
    try:
        import extract_msg
    except ImportError:
        raise missing_extra("extract-msg", "office") from None
    raw = blob.read()
    if not raw.startswith(OLE2_MAGIC):  # extract-msg would take other bytes for a file name
        raise UnreadableFileError(f"{blob.name}: not an Outlook message (no OLE2 header)")
    try:
        msg = extract_msg.openMsg(raw, delayAttachments=False)
    except Exception as e:  # noqa: BLE001 - extract-msg and olefile raise anything
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable MSG "
                                  f"({type(e).__name__}: {str(e)[:120]})") from None
    try:
        headers = {"subject": getattr(msg, "subject", "") or "",
                   "from": getattr(msg, "sender", "") or "",
                   "to": getattr(msg, "to", "") or "",
                   "date": str(getattr(msg, "date", "") or "")}
        headers = {k: " ".join(str(v).split()) for k, v in headers.items()}
        body = getattr(msg, "body", "") or ""
        html = getattr(msg, "htmlBody", None)
        if not body.strip() and isinstance(html, bytes):
            body, _ = html_to_text(html.decode("utf-8", "replace"))
        files = []
        for att in getattr(msg, "attachments", []):
            data = getattr(att, "data", None)
            filename = getattr(att, "longFilename", None) or getattr(att, "shortFilename", "")
            if isinstance(data, bytes) and data and filename:
                files.append((re.split(r"[\\/]", filename)[-1], data))
    finally:
        msg.close()
    docs = [_message_document(blob.name, headers, body)] if body.strip() else []
    docs += _attachment_documents(blob, headers["subject"], files)
    if not docs:
        raise UnreadableFileError(f"{blob.name}: no message text")
    return docs
