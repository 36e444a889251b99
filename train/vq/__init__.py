"""Training the tiny preset's VQ on ShapeWorld: config, quantizer math, trainer (`janus-rig vq train`)."""
