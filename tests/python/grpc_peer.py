"""gRPC peers for tests/grpc.rs (Python grpcio + grpcio-health-checking, installed by .ci/deps).
Generic handlers with raw bytes: no generated stubs needed.

  grpc_peer.py server                  demo.Echo (Unary, Stream, Slow) and grpc.health.v1 on
                                       127.0.0.1:0; prints "port N", serves until killed
  grpc_peer.py call TARGET METHOD [--timeout S] [--ca FILE] [--token T]
                                       one call; prints a JSON line:
                                       {"ok": ...} or {"code": N, "details": ...}, and "secs"
"""
import argparse
import json
import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def server():
    def unary(req, ctx):
        return req

    def stream(req, ctx):
        for i in range(3):
            yield req + str(i).encode()

    def slow(req, ctx):
        time.sleep(3)
        return req

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Echo", handlers),))
    checks = health.HealthServicer()
    checks.set("demo.Echo", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    print("port", port, flush=True)
    srv.wait_for_termination()


def call(args):
    if args.ca:
        creds = grpc.ssl_channel_credentials(open(args.ca, "rb").read())
        channel = grpc.secure_channel(
            args.target, creds, options=[("grpc.ssl_target_name_override", "localhost")]
        )
    else:
        channel = grpc.insecure_channel(args.target)
    md = [("authorization", f"Bearer {args.token}")] if args.token else None
    start = time.monotonic()
    out = {}
    try:
        if args.method == "unary":
            out["ok"] = channel.unary_unary("/demo.Echo/Unary")(
                b"hello", metadata=md, timeout=args.timeout
            ).decode()
        elif args.method == "stream":
            it = channel.unary_stream("/demo.Echo/Stream")(b"m", metadata=md, timeout=args.timeout)
            out["ok"] = [m.decode() for m in it]
        elif args.method == "slow":
            out["ok"] = channel.unary_unary("/demo.Echo/Slow")(
                b"zzz", metadata=md, timeout=args.timeout
            ).decode()
        elif args.method == "health":
            stub = health_pb2_grpc.HealthStub(channel)
            resp = stub.Check(
                health_pb2.HealthCheckRequest(service="demo.Echo"), metadata=md, timeout=args.timeout
            )
            out["ok"] = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    except grpc.RpcError as e:
        out["code"] = e.code().value[0]
        out["details"] = e.details()
    out["secs"] = round(time.monotonic() - start, 3)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server()
    else:
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("target")
        p.add_argument("method")
        p.add_argument("--timeout", type=float, default=10)
        p.add_argument("--ca")
        p.add_argument("--token")
        call(p.parse_args())
