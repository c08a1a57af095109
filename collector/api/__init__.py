"""The collector's HTTP API: accounts and roles, tenant scoping, routes (see app.create_app)."""
