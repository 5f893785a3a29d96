"""A trained model as a file other programs run without charrnn or torch: `charrnn export`.

`onnx.py` writes the one-character step as an ONNX graph (docs/export.md has its interface);
`html.py` writes a self-contained page that samples in the browser.
"""
