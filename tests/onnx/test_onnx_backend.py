"""ONNX's own conformance suite drives Loom's importer and engine (core.interop.onnx_backend):
the node tests of every op the importer translates, each a small model with reference inputs
and outputs. Cases Loom cannot run are excluded by name below, each with its reason."""
import unittest
import warnings

import onnx.backend.test

from core.interop.onnx_backend import LoomBackend

# op type -> the prefix of its node tests (other ops whose tests share a prefix are left out)
OPS = {
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Neg": "neg",
    "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Erf": "erf", "Relu": "relu",
    "Sigmoid": "sigmoid", "Tanh": "tanh", "Sum": "sum", "MatMul": "matmul", "Gemm": "gemm",
    "Softmax": "softmax", "LogSoftmax": "(logsoftmax|log_softmax)",
    "ReduceSum": "reduce_sum(?!_square)", "ReduceMean": "reduce_mean", "ReduceMax": "reduce_max",
    "Reshape": "reshape", "Transpose": "transpose", "Concat": "concat", "Slice": "slice",
    "Flatten": "flatten",
    "Identity": "identity", "Dropout": "dropout", "Conv": "conv", "MaxPool": "maxpool",
    "AveragePool": "averagepool", "GlobalAveragePool": "globalaveragepool",
    "BatchNormalization": "batchnorm", "Gather": "gather(?!_elements)",
    "LayerNormalization": "layer_normalization", "Unsqueeze": "unsqueeze",
    "Squeeze": "squeeze", "LRN": "lrn", "Constant": "constant(?!_pad)",
    "ConstantOfShape": "constantofshape", "Pad": "constant_pad", "ArgMax": "argmax",
    "Where": "where",
}

# whole models PyTorch exported (ONNX's pytorch-converted and pytorch-operator sets, opsets
# 6 to 9, weights listed as graph inputs) whose ops are all ones Loom imports
PYTORCH_MODELS = (
    "AvgPool2d", "AvgPool2d_stride", "BatchNorm1d_3d_input_eval", "BatchNorm2d_eval",
    "BatchNorm2d_momentum_eval", "BatchNorm3d_eval", "BatchNorm3d_momentum_eval",
    "ConstantPad2d", "Conv2d_padding", "Conv2d_strided", "Embedding", "Embedding_sparse",
    "Linear", "Linear_no_bias", "LogSoftmax", "MaxPool2d", "PixelShuffle",
    "PoissonNLLLLoss_no_reduce", "ReLU", "Sigmoid", "Softmax", "Softmin", "Tanh", "ZeroPad2d",
    *(f"operator_{name}" for name in (
        "add_broadcast", "add_size1_broadcast", "add_size1_right_broadcast",
        "add_size1_singleton_broadcast", "addconstant", "addmm", "basic", "concat2", "conv",
        "exp", "flatten", "index", "mm", "params", "permute2", "pow", "reduced_mean",
        "reduced_mean_keepdim", "reduced_sum", "reduced_sum_keepdim", "sqrt",
        "symbolic_override_nested", "view")),
)

INTEGERS = "integer tensors: Loom computes in floating point"
NOT_2D = "1-D or 3-D: Loom's convolutions and pools work on 2-D images"
DILATED = "dilations > 1: Loom's pooling is not dilated"
EMPTY = "an empty tensor (a 0 in its shape): Loom holds none"
SECOND_OUTPUT = "a second output (mask, argmax indices, batch statistics) Loom does not compute"

EXCLUDED = {
    **{f"test_{op}_{t}": INTEGERS for op in ("add", "sub", "mul") for t in
       ("int8", "int16", "uint8", "uint16", "uint32", "uint64")},
    **{f"test_div_{t}": INTEGERS for t in
       ("int8", "int16", "int32_trunc", "uint8", "uint16", "uint32", "uint64")},
    **{f"test_pow_types_{t}": INTEGERS for t in
       ("int32_float32", "int32_int32", "int64_float32", "int64_int64")},
    "test_constantofshape_int_zeros": INTEGERS,
    "test_constantofshape_int_shape_zero": INTEGERS,
    "test_maxpool_2d_uint8": INTEGERS,
    "test_reduce_max_bool_inputs": "boolean tensors: Loom computes in floating point",
    "test_reduce_max_empty_set": EMPTY, "test_reduce_max_empty_set_bool": EMPTY,
    "test_reduce_sum_empty_set": EMPTY, "test_reduce_sum_empty_set_non_reduced_axis_zero": EMPTY,
    "test_relu_expanded_ver18": "the expanded function body uses Max, which Loom does not have",
    "test_averagepool_1d_default": NOT_2D, "test_averagepool_3d_default": NOT_2D,
    "test_averagepool_3d_dilations_small": NOT_2D,
    **{f"test_averagepool_3d_dilations_large_count_include_pad_is_{p}_ceil_mode_is_{c}": NOT_2D
       for p in (0, 1) for c in (False, True)},
    "test_maxpool_1d_default": NOT_2D, "test_maxpool_3d_default": NOT_2D,
    "test_maxpool_3d_dilations": NOT_2D, "test_maxpool_3d_dilations_use_ref_impl": NOT_2D,
    "test_maxpool_3d_dilations_use_ref_impl_large": NOT_2D,
    "test_averagepool_2d_dilations": DILATED, "test_maxpool_2d_dilations": DILATED,
    "test_maxpool_with_argmax_2d_precomputed_pads": SECOND_OUTPUT,
    "test_maxpool_with_argmax_2d_precomputed_strides": SECOND_OUTPUT,
    "test_dropout_default_mask": SECOND_OUTPUT, "test_dropout_default_mask_ratio": SECOND_OUTPUT,
    "test_batchnorm_epsilon_training_mode": SECOND_OUTPUT,
    "test_batchnorm_example_training_mode": SECOND_OUTPUT,
    "test_identity_opt": "an optional input: Loom's inputs are tensors",
    "test_identity_sequence": "a sequence input: Loom's inputs are tensors",
    "test_reshape_allowzero_reordered": EMPTY,
    "test_slice_start_out_of_bounds": "an empty result: Loom holds no empty tensors",
    "test_slice_neg_steps": "steps other than 1: Loom's slice takes contiguous blocks",
    **{f"test_argmax_{case}_select_last_index": "select_last_index=1: Loom's argmax picks "
       "the first of equal largest" for case in (
           f"{form}_{data}" for form in ("default_axis", "keepdims", "negative_axis_keepdims",
                                         "no_keepdims") for data in ("example", "random"))},
    "test_where_long_example": INTEGERS,
}

with warnings.catch_warnings():  # ONNX's reference outputs divide by zero on purpose
    warnings.simplefilter("ignore", RuntimeWarning)
    backend_test = onnx.backend.test.BackendTest(LoomBackend, __name__)
for _prefix in OPS.values():
    backend_test.include(rf"^test_{_prefix}(_.*)?_cpu$")
backend_test.include(rf"^test_({'|'.join(PYTORCH_MODELS)})_cpu$")


def _selected(cases):
    """The included CPU cases only (the rest would show as thousands of skips), each
    excluded one skipped with its reason."""
    for case in cases.values():
        for name in [n for n in dir(case) if n.startswith("test_")]:
            test = getattr(case, name)
            if getattr(test, "__unittest_skip__", False):
                delattr(case, name)
            elif name.removesuffix("_cpu") in EXCLUDED:
                setattr(case, name, unittest.skip(EXCLUDED[name.removesuffix("_cpu")])(test))
    return cases


TEST_CASES = _selected(backend_test.test_cases)
globals().update(TEST_CASES)


def test_every_exclusion_names_an_included_case():
    """An exclusion for a case that no longer exists (or is not selected) is a stale one."""
    selected = {n.removesuffix("_cpu") for case in TEST_CASES.values()
                for n in dir(case) if n.startswith("test_")}
    assert not set(EXCLUDED) - selected, sorted(set(EXCLUDED) - selected)
