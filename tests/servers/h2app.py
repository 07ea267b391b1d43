"""A tiny ASGI app served by hypercorn in the TLS and HTTP/2 tests: it says which protocol and connection it saw."""

import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps({"http_version": scope["http_version"], "client_port": scope["client"][1],
                       "path": scope["path"]}).encode()
    if scope["path"].startswith("/slow"):
        import asyncio

        await asyncio.sleep(0.2)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["path"] == "/login":  # a session cookie for the whole host, and one for https only
        headers += [(b"set-cookie", b"session=abc; Path=/; HttpOnly"), (b"set-cookie", b"token=t; Path=/; Secure")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
