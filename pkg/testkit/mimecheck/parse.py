"""Reads raw RFC 5322 messages with Python's email package and prints what it
understood as JSON, for pkg/testkit/mimecheck. Input: a JSON list of base64 messages on
stdin. Output: a JSON list of parsed messages, in the same order."""
import base64
import email
import email.policy
import email.utils
import hashlib
import json
import sys

ADDRESS_HEADERS = ("from", "sender", "reply-to", "to", "cc", "bcc")


def utf8(s):
    """RFC 6532 headers carry raw UTF-8; the bytes parser keeps such bytes as
    surrogate escapes. Turn them back into text (invalid UTF-8 stays visible as
    U+FFFD)."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def addresses(msg, name):
    values = msg.get_all(name) or []
    out = []
    for v in values:
        # The header registry decodes RFC 2047 display names and IDN forms.
        for group in v.groups:
            for a in group.addresses:
                out.append({"name": utf8(a.display_name), "address": utf8(a.addr_spec)})
    return out


def parse(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    defects = [type(d).__name__ for d in msg.defects]
    headers = []
    for k, v in msg.items():
        headers.append([k, utf8(str(v))])
    parts = []
    for part in msg.walk():
        defects += [type(d).__name__ for d in part.defects]
        if part.is_multipart():
            parts.append({"content_type": part.get_content_type(), "multipart": True})
            continue
        payload = part.get_payload(decode=True) or b""
        p = {
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset() or "",
            "disposition": part.get_content_disposition() or "",
            "filename": part.get_filename() or "",
            "content_id": (part.get("Content-ID") or "").strip(),
            "transfer_encoding": part.get("Content-Transfer-Encoding", ""),
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        if part.get_content_maintype() == "text":
            p["text"] = part.get_content()
        parts.append(p)
    return {
        "headers": headers,
        "subject": utf8(str(msg.get("subject", ""))),
        "addresses": {h: addresses(msg, h) for h in ADDRESS_HEADERS if msg.get(h) is not None},
        "message_id": str(msg.get("message-id", "")),
        "parts": parts,
        "defects": defects,
    }


def main():
    out = []
    for b in json.load(sys.stdin):
        try:
            out.append(parse(base64.b64decode(b)))
        except Exception as e:  # reported per message, never fatal for the batch
            out.append({"error": "%s: %s" % (type(e).__name__, e)})
    json.dump(out, sys.stdout)


main()
