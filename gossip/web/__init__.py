"""The web client page served at ``GET /`` (package data: index.html, app.js, app.css)."""
