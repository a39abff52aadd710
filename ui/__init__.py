"""The imagesim web page and API (Gradio). Imported only by `imagesim serve` and tests: gradio loads lazily."""
