"""The application layer's jobs: the quickstart (serve the champion, ask it), the closed-loop
demo (replay, drift, retrain, hot reload) and the quality run; the CLI calls them."""
