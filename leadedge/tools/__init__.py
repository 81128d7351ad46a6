"""The command line and what only it uses: replay, reindex, Kibana objects, the demo."""
