"""Model compression: weight sharing, magnitude pruning, distillation, and the compressed weights format."""
