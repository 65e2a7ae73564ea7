"""Baseline runtime for benchmarks: one ONNX call and nothing else (no validation, features, metrics).

`mlplat bench models` serves a model's `model.onnx` through this runtime in the same
MLServer run as the real runtimes, so each model's throughput can be given as a ratio to it.
Input: one FP32 tensor `input` of shape [n, n_features]. Output: the model's first output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class BareOnnxRuntime(MLModel):
    async def load(self) -> bool:
        path = Path(self.settings.parameters.uri) / "model.onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[-1].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        out = np.asarray(out, dtype=np.float32) if not isinstance(out, list) else np.asarray(
            [[d.get(k, 0.0) for k in sorted(d)] for d in out], dtype=np.float32
        )
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("output", out)])
