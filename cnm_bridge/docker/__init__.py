"""The Docker-facing side: request bodies parsed, the Flask routes, the gunicorn server."""
