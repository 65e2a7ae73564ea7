"""Output tensors of the runtimes must convert to the V2 gRPC protocol as well as to REST JSON
(found by `mlplat bench models --grpc`: string outputs as `str` failed every gRPC call of the
recommendation runtime with 'expected bytes, str found')."""

from __future__ import annotations

import json

import numpy as np
from mlserver.codecs.json import encode_to_json_bytes
from mlserver.grpc.converters import ModelInferResponseConverter
from mlserver.types import InferenceResponse

from ml.serving.runtime_base import tensor


def test_string_float_and_bool_tensors_convert_to_grpc_and_rest():
    response = InferenceResponse(model_name="m", outputs=[
        tensor("title", ["Ugly Love", "Black Ice"]),
        tensor("score", np.array([0.5, 0.25], dtype=np.float32)),
        tensor("degraded", np.array([False, True])),
    ])
    proto = ModelInferResponseConverter.from_types(response)
    assert list(proto.outputs[0].contents.bytes_contents) == [b"Ugly Love", b"Black Ice"]
    assert list(proto.outputs[2].contents.bool_contents) == [False, True]
    rest = json.loads(encode_to_json_bytes(response.model_dump(exclude_none=True)))
    assert rest["outputs"][0]["data"] == ["Ugly Love", "Black Ice"]
