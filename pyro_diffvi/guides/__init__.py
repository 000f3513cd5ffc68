"""Amortized, model-aware guides: GaussianGuide, DiffusionGuide, FlowGuide, HierarchicalGuide."""

__all__: list[str] = []
