"""SMTP submission with Python's smtplib, as an application that speaks only
SMTP does it. Usage: submit.py PORT CAFILE KEY. Prints one JSON object with
what each step answered; the Go test (TestSMTPSubmission) checks it."""
import base64
import json
import smtplib
import ssl
import sys
from email.message import EmailMessage

port, cafile, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
host = "127.0.0.1"
ctx = ssl.create_default_context(cafile=cafile)
out = {}


def message(sender, to, msgid):
    m = EmailMessage()
    m["From"] = "App <%s>" % sender
    m["To"] = to
    m["Subject"] = "From smtplib"
    m["Message-ID"] = msgid
    m.set_content("Sent by Python's smtplib through SMTP submission.")
    m.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename="a.pdf")
    return m


# Before STARTTLS: no AUTH offered, and AUTH refused.
with smtplib.SMTP(host, port, timeout=20) as s:
    s.ehlo("app.example.com")
    out["auth_offered_plain"] = s.has_extn("auth")
    cred = base64.b64encode(b"\0app\0" + key.encode()).decode()
    code, _ = s.docmd("AUTH", "PLAIN " + cred)
    out["auth_plaintext"] = code

with smtplib.SMTP(host, port, timeout=20) as s:
    s.starttls(context=ctx)
    s.ehlo("app.example.com")
    out["auth_offered_tls"] = s.esmtp_features.get("auth", "")
    try:
        s.login("app", "es_not-a-key")
        out["bad_key"] = 235
    except smtplib.SMTPAuthenticationError as e:
        out["bad_key"] = e.smtp_code
    s.login("app", key)
    msg = message("app@example.com", "py@example.org", "<py-1@app.example.com>").as_bytes()
    ids = []
    for _ in range(2):  # the same Message-ID twice: the same id
        s.mail("app@example.com")
        s.rcpt("py@example.org")
        s.rcpt("py-bcc@example.org")
        code, resp = s.data(msg)
        ids.append([code, resp.decode()])
    out["sent"] = ids
    # An unverified sender.
    try:
        s.sendmail("someone@unverified.example.net", ["py@example.org"],
                   message("someone@unverified.example.net", "py@example.org", "<py-2@app.example.com>").as_bytes())
        out["unverified"] = [250, ""]
    except smtplib.SMTPDataError as e:
        out["unverified"] = [e.smtp_code, e.smtp_error.decode()]

# AUTH LOGIN, and the high-level send_message.
with smtplib.SMTP(host, port, timeout=20) as s:
    s.starttls(context=ctx)
    s.ehlo("app.example.com")
    code, _ = s.auth("LOGIN", lambda challenge=None: "app" if challenge is None or challenge == b"Username:" else key,
                     initial_response_ok=False)
    out["login"] = code
    out["send_message"] = s.send_message(message("app@example.com", "py-login@example.org", "<py-3@app.example.com>"))

json.dump(out, sys.stdout)
