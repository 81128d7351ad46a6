"""The gate in front of every HTTP route: API keys, what each key may do, the guarded server.

The Faust runtime installs the server (`engine/app.py`); the views in `leadedge.web`
register behind it. Nothing here imports the app, so the runtime and the views do not
import each other in a circle.
"""
