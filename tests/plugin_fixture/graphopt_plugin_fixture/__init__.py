"""An out-of-tree graphopt pass package (test fixture)."""
