"""Models in other formats: ONNX import (`onnx_import`), export (`onnx_export`) and the
conformance backend ONNX's own test suite drives (`onnx_backend`). `onnx` is imported only
here, and only when one of them is used."""
