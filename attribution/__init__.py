"""Revenue attribution for model versions: DoWhy identify → estimate → refute, validity gate,
slice attribution, mechanism decomposition and the HTML/JSON report (`loopline attribute`)."""
