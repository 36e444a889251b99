"""ShapeWorld: the embedded synthetic world (scenes, prompts, chains, exact oracle) the method is proven on."""
