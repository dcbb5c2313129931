"""A small local Azure Functions host (development only, never deployed).

Core Tools cannot be installed here, so this runs `function_app.app` with the real host's
documented semantics for the triggers the app uses: HTTP, timer and Storage queue.
"""
