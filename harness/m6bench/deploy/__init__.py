"""Deployment: artifacts compressed, exported to ONNX, served over HTTP and load-tested."""
