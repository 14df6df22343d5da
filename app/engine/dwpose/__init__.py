"""DWPose on ONNX Runtime: YOLOX-L person boxes, then DW-LL whole-body keypoints (SimCC)."""
