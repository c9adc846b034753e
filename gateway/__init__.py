"""The Starlette + python-socketio gateway: sockets in, relayed events out."""
