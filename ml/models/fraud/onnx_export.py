"""Export a LightGBM binary classifier to ONNX (ai.onnx.ml TreeEnsembleRegressor + Sigmoid).

Written here rather than taken from onnxmltools to avoid another dependency in the ML environment
for ~80 lines: the booster's JSON dump maps one to one onto the tree-ensemble operator. Only what
the fraud model uses is supported (binary objective, numerical `<=` splits, no categorical splits,
no linear trees); anything else is refused rather than exported wrongly.

Exactness: inputs are float32 and LightGBM's thresholds are float64. Each threshold is stored as
the largest float32 not above it, so `x <= t` gives the same branch for every float32 `x` as the
float64 comparison LightGBM makes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

INPUT, OUTPUT = "input", "fraud_probability"
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]


def _floor_f32(value: float) -> float:
    f = np.float32(value)
    if float(f) > value:
        f = np.nextafter(f, np.float32(-np.inf), dtype=np.float32)
    return float(f)


class _Trees:
    """Flat node/leaf arrays in the tree-ensemble operator's attribute layout."""

    def __init__(self) -> None:
        self.nodes: dict[str, list[Any]] = {k: [] for k in (
            "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
            "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
        self.targets: dict[str, list[Any]] = {k: [] for k in (
            "target_treeids", "target_nodeids", "target_ids", "target_weights")}

    def add_tree(self, tree_id: int, root: dict[str, Any]) -> None:
        counter = iter(range(1 << 30))
        self._add(tree_id, root, next(counter), counter)

    def _add(self, tree_id: int, node: dict[str, Any], node_id: int, counter: Any) -> None:
        n = self.nodes
        n["nodes_treeids"].append(tree_id)
        n["nodes_nodeids"].append(node_id)
        if "leaf_value" in node:
            for key, value in (("nodes_featureids", 0), ("nodes_values", 0.0), ("nodes_modes", "LEAF"),
                               ("nodes_truenodeids", 0), ("nodes_falsenodeids", 0),
                               ("nodes_missing_value_tracks_true", 0)):
                n[key].append(value)
            t = self.targets
            t["target_treeids"].append(tree_id)
            t["target_nodeids"].append(node_id)
            t["target_ids"].append(0)
            t["target_weights"].append(float(node["leaf_value"]))
            return
        if node.get("decision_type") != "<=":
            raise ValueError(f"unsupported split type {node.get('decision_type')!r} (only numerical '<=')")
        left, right = next(counter), next(counter)
        n["nodes_featureids"].append(int(node["split_feature"]))
        n["nodes_values"].append(_floor_f32(float(node["threshold"])))
        n["nodes_modes"].append("BRANCH_LEQ")
        n["nodes_truenodeids"].append(left)
        n["nodes_falsenodeids"].append(right)
        n["nodes_missing_value_tracks_true"].append(int(bool(node.get("default_left", True))))
        self._add(tree_id, node["left_child"], left, counter)
        self._add(tree_id, node["right_child"], right, counter)


def to_onnx(booster: Any, n_features: int, doc: str = "fraud model") -> onnx.ModelProto:
    """ONNX model: `input` float32 [N, n_features] -> `fraud_probability` float32 [N, 1]."""
    dump = booster.dump_model()
    objective = str(dump.get("objective", ""))
    if not objective.startswith("binary") or dump.get("num_class", 1) != 1:
        raise ValueError(f"only binary LightGBM models can be exported, got objective {objective!r}")
    if dump.get("max_feature_idx", -1) + 1 != n_features:
        raise ValueError(f"booster has {dump.get('max_feature_idx', -1) + 1} features, expected {n_features}")
    sigmoid = float(objective.split("sigmoid:")[1].split()[0]) if "sigmoid:" in objective else 1.0
    trees = _Trees()
    for info in dump["tree_info"]:
        if info.get("num_cat", 0):
            raise ValueError("categorical splits are not supported by this exporter")
        trees.add_tree(int(info["tree_index"]), info["tree_structure"])
    raw = helper.make_node("TreeEnsembleRegressor", [INPUT], ["raw_score"], domain="ai.onnx.ml",
                           n_targets=1, aggregate_function="SUM", post_transform="NONE",
                           base_values=[0.0], **trees.nodes, **trees.targets)
    nodes = [raw]
    scaled = "raw_score"
    if sigmoid != 1.0:  # LightGBM's probability is 1 / (1 + exp(-sigmoid * raw))
        nodes.append(helper.make_node("Constant", [], ["sigmoid_scale"], value=helper.make_tensor(
            "sigmoid_scale", TensorProto.FLOAT, [], [sigmoid])))
        nodes.append(helper.make_node("Mul", ["raw_score", "sigmoid_scale"], ["scaled_score"]))
        scaled = "scaled_score"
    nodes.append(helper.make_node("Sigmoid", [scaled], [OUTPUT]))
    graph = helper.make_graph(
        nodes, "fraud_gbt",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, producer_name="mlplatform-fraud", doc_string=doc)
    model.ir_version = 9  # readable by onnxruntime >= 1.15
    onnx.checker.check_model(model)
    return model
