"""The web page: a Gradio app over a registered model. Nothing imports it; it imports the registry
and the building blocks."""
