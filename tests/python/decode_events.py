#!/usr/bin/env python3
"""Independent decoder of shardmq's event streams, for tests/events_python.rs.

Generates Python classes from proto/*.proto with grpc_tools.protoc (the
`grpcio-tools` package from PyPI) and decodes them with the `protobuf`
package, so the check shares no code with the Rust side. Reads a native
stream (SMQE frames) and a vmq-compat stream (4-byte length + Any) from
files and prints one JSON document:

    {"native": [{"shard": 7, "seq": 100, "hook": "on_register",
                 "message": {...}}, ...],
     "vmq": [{"type_url": "...", "message": {...}}, ...]}

Messages are protobuf's JSON mapping with the .proto field names (enums by
name, bytes as base64, Timestamps as RFC 3339).

Usage: decode_events.py PROTO_DIR NATIVE_FILE VMQ_FILE
"""

import importlib
import json
import os
import struct
import sys
import tempfile

NATIVE_HEADER = struct.Struct(">4sBBHQII")


def generate(proto_dir, out_dir):
    """Runs protoc (bundled in grpc_tools) on the .proto files."""
    from grpc_tools import protoc
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = [
        "eventssidecar/v1/events.proto",
        "shardmq/events/v1/native.proto",
    ]
    args = ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out_dir}"] + files
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed on {files} in {proto_dir}")
    sys.path.insert(0, out_dir)
    events = importlib.import_module("eventssidecar.v1.events_pb2")
    native = importlib.import_module("shardmq.events.v1.native_pb2")
    return events, native


def varint(buf, pos):
    """Decodes a protobuf base-128 varint at `pos`: (value, next pos)."""
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the frame body")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def to_dict(message):
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def decode_native(data, native):
    out, pos = [], 0
    while pos < len(data):
        if len(data) - pos < NATIVE_HEADER.size:
            raise ValueError("truncated native header")
        magic, version, _flags, shard, first_seq, count, body_len = NATIVE_HEADER.unpack_from(data, pos)
        if magic != b"SMQE" or version != 1:
            raise ValueError(f"bad native header {magic!r} v{version}")
        pos += NATIVE_HEADER.size
        body = data[pos : pos + body_len]
        if len(body) != body_len:
            raise ValueError("truncated native body")
        pos += body_len
        at = 0
        for i in range(count):
            length, at = varint(body, at)
            event = native.Event.FromString(body[at : at + length])
            at += length
            hook = event.WhichOneof("event")
            out.append(
                {
                    "shard": shard,
                    "seq": first_seq + i,
                    "hook": hook,
                    "message": to_dict(getattr(event, hook)),
                }
            )
        if at != body_len:
            raise ValueError("bytes left after the last event")
    return out


def decode_vmq(data, events):
    from google.protobuf import any_pb2

    out, pos = [], 0
    prefix = "type.googleapis.com/eventssidecar.v1."
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 4
        any_msg = any_pb2.Any.FromString(data[pos : pos + length])
        pos += length
        if not any_msg.type_url.startswith(prefix):
            raise ValueError(f"unexpected type_url {any_msg.type_url}")
        cls = getattr(events, any_msg.type_url[len(prefix) :])
        message = cls()
        if not any_msg.Unpack(message):
            raise ValueError(f"Any does not hold {any_msg.type_url}")
        out.append({"type_url": any_msg.type_url, "message": to_dict(message)})
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    proto_dir, native_file, vmq_file = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        events, native = generate(proto_dir, tmp)
        with open(native_file, "rb") as f:
            native_events = decode_native(f.read(), native)
        with open(vmq_file, "rb") as f:
            vmq_events = decode_vmq(f.read(), events)
    json.dump({"native": native_events, "vmq": vmq_events}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
