"""A REAPI Execution front for engines that read only `Command.output_paths` (REAPI 2.1).

    python reapi_outputs_adapter.py LISTEN_PORT ENGINE_ADDRESS

Why: Pants 2.17.1 describes a process's outputs with the REAPI 2.0 fields `output_files` and
`output_directories` only. buildbox-run (buildbox-casd's runner) collects `output_paths` only, so
every remotely executed process came back without outputs (and Pants cached those empty results).
Engines that still honour the 2.0 fields, as the REAPI spec asks of servers for 2.0 clients, do
not need this: point Pants' `remote_execution_address` at them directly (README: "Scaling out").

What it does: Execution.Execute is rewritten, everything else (WaitExecution, Capabilities,
Operations) is passed through untouched. For Execute it reads the Action and its Command from the
engine's CAS, sets `output_paths` to the union of the two 2.0 fields (a 2.1 server then ignores
them), stores the new Command and Action, and executes that. The engine caches the result under
the new action's digest, which no client asks for: Pants 2.17 always sends `skip_cache_lookup` and
reads and writes the action cache itself, under the original digest, with `remote_cache_read` and
`remote_cache_write` (so set them with remote execution).
"""

from __future__ import annotations

import hashlib
import sys
import threading
from concurrent import futures

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc

EXECUTE = "/build.bazel.remote.execution.v2.Execution/Execute"
# Methods passed through as they are, by shape; anything else is answered UNIMPLEMENTED.
UNARY_STREAM = {"/build.bazel.remote.execution.v2.Execution/WaitExecution"}
UNARY_UNARY_PREFIXES = (
    "/build.bazel.remote.execution.v2.Capabilities/",
    "/google.longrunning.Operations/",
)


def digest_of(blob: bytes) -> re.Digest:
    return re.Digest(hash=hashlib.sha256(blob).hexdigest(), size_bytes=len(blob))


class Adapter:
    def __init__(self, engine: str) -> None:
        self.channel = grpc.insecure_channel(engine)
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.execution = re_grpc.ExecutionStub(self.channel)

    def read(self, instance: str, digest: re.Digest) -> bytes:
        reply = self.cas.BatchReadBlobs(re.BatchReadBlobsRequest(instance_name=instance, digests=[digest]))
        (response,) = reply.responses
        if response.status.code != 0:
            raise LookupError(f"blob {digest.hash}/{digest.size_bytes}: {response.status.message}")
        return response.data

    def write(self, instance: str, blob: bytes) -> re.Digest:
        digest = digest_of(blob)
        reply = self.cas.BatchUpdateBlobs(
            re.BatchUpdateBlobsRequest(
                instance_name=instance, requests=[re.BatchUpdateBlobsRequest.Request(digest=digest, data=blob)]
            )
        )
        (response,) = reply.responses
        if response.status.code != 0:
            raise OSError(f"storing {digest.hash}: {response.status.message}")
        return digest

    def rewritten(self, request: re.ExecuteRequest) -> re.ExecuteRequest:
        """The request to run instead."""
        instance = request.instance_name
        action = re.Action.FromString(self.read(instance, request.action_digest))
        command = re.Command.FromString(self.read(instance, action.command_digest))
        if not command.output_paths:
            command.output_paths.extend(sorted({*command.output_files, *command.output_directories}))
            action.command_digest.CopyFrom(self.write(instance, command.SerializeToString()))
        new = re.ExecuteRequest()
        new.CopyFrom(request)
        new.action_digest.CopyFrom(self.write(instance, action.SerializeToString()))
        return new

    def execute(self, raw: bytes, context: grpc.ServicerContext):
        request = re.ExecuteRequest.FromString(raw)
        try:
            new = self.rewritten(request)
        except (LookupError, OSError) as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        yield from relay_stream(self.execution.Execute, new, context)

    def pass_unary_stream(self, method: str):
        call = self.channel.unary_stream(method)
        return lambda raw, context: relay_stream(call, raw, context)

    def pass_unary_unary(self, method: str):
        call = self.channel.unary_unary(method)

        def relay(raw: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                return call(raw)
            except grpc.RpcError as e:
                context.abort(e.code(), e.details())

        return relay


def relay_stream(call, request, context: grpc.ServicerContext):
    """The engine's replies, as bytes, with its status on failure (the client retries by code:
    an UNAVAILABLE must not become UNKNOWN); a client that goes away cancels the engine's call,
    so that a cancelled action does not hold a job slot."""
    replies = call(request)
    context.add_callback(replies.cancel)
    try:
        for reply in replies:
            yield reply if isinstance(reply, bytes) else reply.SerializeToString()
    except grpc.RpcError as e:
        context.abort(e.code(), e.details())


class Handler(grpc.GenericRpcHandler):
    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    def service(self, details):
        method = details.method
        if method == EXECUTE:
            return grpc.unary_stream_rpc_method_handler(self.adapter.execute)
        if method in UNARY_STREAM:
            return grpc.unary_stream_rpc_method_handler(self.adapter.pass_unary_stream(method))
        if method.startswith(UNARY_UNARY_PREFIXES):
            return grpc.unary_unary_rpc_method_handler(self.adapter.pass_unary_unary(method))
        return None


def main() -> None:
    port, engine = sys.argv[1:]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=128))  # Pants' default RPC concurrency
    server.add_generic_rpc_handlers([Handler(Adapter(engine))])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
