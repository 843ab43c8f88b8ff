"""The FastAPI tutorial's background-task app, traced by taskwatch.

It is the "Background Tasks" tutorial of the FastAPI docs with the
dependency-injection variant, plus a send_email that fails for addresses in
one domain, so a failure (and the skipped task after it) shows up:

    POST /send-notification/{email}?q=...
        get_query (a dependency) adds write_log("found query: ...") when q
        is given; the endpoint adds write_notification (sync, thread pool),
        send_email (async, event loop) and write_log (sync).

Run it (from the source tree, after `ninja -C build`):

    TASKWATCH_COLLECTOR=tcp://127.0.0.1:7460 \
    TASKWATCH_LIBRARY=build/agent/libtaskwatch.so PYTHONPATH=python \
    /usr/bin/python3 -m uvicorn --app-dir examples/fastapi_notify app:app

Environment: NOTIFY_LOG (default notify-log.txt), NOTIFY_FAIL_DOMAIN
(default @invalid.test), NOTIFY_EMAIL_DELAY_MS (default 10).
"""

import asyncio
import os
from typing import Optional

from fastapi import BackgroundTasks, Depends, FastAPI

import taskwatch

taskwatch.instrument()

LOG = os.environ.get("NOTIFY_LOG", "notify-log.txt")
FAIL_DOMAIN = os.environ.get("NOTIFY_FAIL_DOMAIN", "@invalid.test")
EMAIL_DELAY = int(os.environ.get("NOTIFY_EMAIL_DELAY_MS", "10")) / 1000.0

app = FastAPI()


class SMTPRecipientRefused(Exception):
    pass


def write_notification(email: str, message: str = ""):
    with open(LOG, mode="a") as log:
        log.write(f"notification for {email}: {message}\n")


async def send_email(email: str):
    await asyncio.sleep(EMAIL_DELAY)  # stands in for the mail server
    if email.endswith(FAIL_DOMAIN):
        raise SMTPRecipientRefused(f"550 recipient rejected: {email}")


def write_log(message: str):
    with open(LOG, mode="a") as log:
        log.write(message + "\n")


def get_query(background_tasks: BackgroundTasks, q: Optional[str] = None):
    if q:
        background_tasks.add_task(write_log, f"found query: {q}")
    return q


@app.post("/send-notification/{email}")
async def send_notification(email: str, background_tasks: BackgroundTasks,
                            q: str = Depends(get_query)):
    background_tasks.add_task(write_notification, email,
                              message="some notification")
    background_tasks.add_task(send_email, email)
    background_tasks.add_task(write_log, f"log: sent notification to {email}")
    return {"message": "Notification sent in the background"}


@app.get("/healthz")
async def healthz():
    return {"ok": True}
