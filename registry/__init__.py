"""Model registry side: servable pyfunc wrappers and promotion of the best run."""
