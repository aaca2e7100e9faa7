"""WebSocket peers for tests/websocket.rs (Python `websockets`, installed by .ci/deps).

  ws.py server                      echo server on 127.0.0.1:0; prints "port N", runs until killed
  ws.py client URL N PAUSE [TOKEN]  echoes N messages, waits PAUSE s, echoes one more;
                                    prints "echoed N+1" or "refused STATUS"
  ws.py idle URL WAIT               connects and waits up to WAIT s for the gateway to close;
                                    prints "closed SECONDS" or "open"
"""
import asyncio
import sys
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def server():
    async def echo(ws):
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    async with serve(echo, "127.0.0.1", 0) as s:
        print("port", s.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


async def client(url, n, pause, token):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        async with connect(url, additional_headers=headers) as ws:
            done = 0
            for i in range(n):
                await ws.send(f"message {i}")
                assert await ws.recv() == f"message {i}"
                done += 1
            await asyncio.sleep(pause)
            await ws.send("after the pause")
            assert await ws.recv() == "after the pause"
            print("echoed", done + 1, flush=True)
    except InvalidStatus as e:
        print("refused", e.response.status_code, flush=True)


async def idle(url, wait):
    start = time.monotonic()
    async with connect(url, ping_interval=None) as ws:
        try:
            await asyncio.wait_for(ws.recv(), wait)
        except ConnectionClosed:
            print("closed", round(time.monotonic() - start, 3), flush=True)
            return
        except asyncio.TimeoutError:
            pass
    print("open", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(server())
    elif mode == "client":
        token = sys.argv[5] if len(sys.argv) > 5 else None
        asyncio.run(client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), token))
    elif mode == "idle":
        asyncio.run(idle(sys.argv[2], float(sys.argv[3])))
